// qwen-meter dashboard, part 3: snapshot mode. A static report carries the API's answers in a
// JSON script block (its id: qm-snapshot); these functions answer the page's questions from
// it (and filter its calls in the browser), so the same page works with no server behind it.

const QM = globalThis.QM;
const { DIMS, PAGE, page, t, PageError } = QM;

function readSnapshot() {
  const node = document.getElementById("qm-snapshot");
  if (!node) return null;
  return JSON.parse(node.textContent);
}

function snapMissing() {
  throw new PageError(t("snapshot_missing"));
}

function rowMatches(row, q) {
  for (const d of DIMS) {
    const wanted = q.getAll(d);
    if (!wanted.length) continue;
    if (d === "tag") {
      const tags = row.tags || [];
      if (!wanted.some((w) => tags.includes(w))) return false;
    } else if (!wanted.includes(String(row[d] ?? ""))) {
      return false;
    }
  }
  const start = q.get("bucket_start");
  const end = q.get("bucket_end");
  const when = Date.parse(row.time);
  if (start && !(when >= Date.parse(start))) return false;
  if (end && !(when < Date.parse(end))) return false;
  const problem = q.get("problem");
  if (problem) {
    if (problem === "estimated") return Boolean(row.usage_estimated);
    return row.status === problem;
  }
  return true;
}

function fromSnapshot(path, params) {
  const snap = page.snapshot;
  const pick = (v) => (v == null ? snapMissing() : structuredClone(v));
  switch (path) {
    case "meta":
      return pick(snap.meta);
    case "overview":
      return pick(snap.overview);
    case "problems":
      return pick(snap.problems);
    case "series": {
      const parts = [params.get("metric"), params.get("by"), params.get("bucket")];
      const all = snap.series || {};
      return pick(all[parts.join("/")] ?? all[parts.join(":")]);
    }
    case "top": {
      const answer = pick((snap.top || {})[params.get("by")]);
      answer.rows = answer.rows.slice(0, Number(params.get("n") || 20));
      return answer;
    }
    case "calls": {
      const answer = pick(snap.calls);
      let rows = answer.rows.filter((r) => rowMatches(r, params));
      if (params.get("order") === "cost") rows.sort((a, b) => Number(b.cost || 0) - Number(a.cost || 0));
      const offset = Number(params.get("offset") || 0);
      const limit = Number(params.get("limit") || PAGE);
      const notices = [...(answer.notices || [])];
      const total = Number(answer.total ?? answer.rows.length);
      if (total > answer.rows.length) notices.push(t("snapshot_calls_kept", { n: answer.rows.length, total }));
      return { total: rows.length, rows: rows.slice(offset, offset + limit), notices };
    }
    default:
      return snapMissing();
  }
}

Object.assign(QM, { readSnapshot, fromSnapshot });
QM.parts = [...(QM.parts || []), "snapshot"];
