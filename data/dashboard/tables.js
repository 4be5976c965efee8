// qwen-meter dashboard, part 5: tables: the table builder, CSV export links (from the server,
// or made in the browser for a snapshot), the calls' columns and the record a click opens.

const QM = globalThis.QM;
const { page, stored, t, fmtInt, fmtNum, moneyEl, el, timeLabel, authHeaders, exportHref } = QM;

function table(columns, rows, { onRow, caption, csv, rowData } = {}) {
  const wrap = el("div", { class: "qm-table-wrap" });
  const head = el("div", { class: "qm-table-head" });
  if (caption) head.append(el("h3", { text: caption }));
  if (csv) head.append(csv);
  wrap.append(head);
  const tbl = el("table", { class: "qm-table" });
  const tr = el("tr");
  for (const c of columns) tr.append(el("th", { text: c.label, class: c.num ? "num" : null }));
  tbl.append(el("thead", {}, tr));
  const body = el("tbody");
  for (const row of rows) {
    const r = el("tr", { class: onRow ? "qm-click" : null, tabindex: onRow ? "0" : null,
      data: rowData ? rowData(row) : null });
    for (const c of columns) {
      const v = c.value(row);
      r.append(el("td", { class: c.num ? "num" : null, data: { col: c.key } }, v instanceof Node ? v : String(v ?? "")));
    }
    if (onRow) {
      r.addEventListener("click", () => onRow(row, r));
      r.addEventListener("keydown", (e) => { if (e.key === "Enter") onRow(row, r); });
    }
    body.append(r);
  }
  tbl.append(body);
  wrap.append(tbl);
  return wrap;
}

function csvLink(table, extra, rowsForSnapshot, local = false) {
  if (page.snapshot || local) {
    // no server behind a snapshot: the CSV is made here from the rows on the page
    const a = el("a", { class: "qm-csv", text: t("export_csv"), download: `${table}.csv`, href: "#" });
    a.addEventListener("click", () => {
      const rows = rowsForSnapshot ? rowsForSnapshot() : [];
      const text = rows.map((r) => r.map((v) => {
        let s = String(v ?? "");
        if (/^[=+\-@]/.test(s)) s = `'${s}`;
        return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
      }).join(",")).join("\n");
      a.href = URL.createObjectURL(new Blob([`${text}\n`], { type: "text/csv;charset=utf-8" }));
    });
    return a;
  }
  const a = el("a", { class: "qm-csv", text: t("export_csv"), href: exportHref(table, extra) });
  // a plain link cannot carry the admin token: with one, the file is fetched and handed over
  a.addEventListener("click", async (e) => {
    if (!stored("sessionStorage", "qm.token")) return;
    e.preventDefault();
    const resp = await fetch(a.getAttribute("href"), { headers: authHeaders() });
    const blob = await resp.blob();
    const link = el("a", { href: URL.createObjectURL(blob), download: `${table}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
  });
  return a;
}

// The record fields as columns; the optional ones only when some row has them.
function callColumns(rows) {
  const some = (k) => rows.some((r) => r[k] != null && r[k] !== "" && r[k] !== false);
  const optional = new Set(["key", "usage_estimated", "error", "latency_ms"]);
  return [
    { key: "time", label: t("col_time"), value: (r) => timeLabel(r.time) },
    // the first 12 characters (the whole id is in the title and in the opened record)
    { key: "id", label: t("col_id"), value: (r) => el("code", { title: r.id ?? "",
      text: String(r.id ?? "").length > 12 ? `${String(r.id).slice(0, 12)}…` : r.id ?? "" }) },
    { key: "model", label: t("col_model"), value: (r) => r.model },
    { key: "status", label: t("col_status"), value: (r) => r.status },
    { key: "user", label: t("col_user"), value: (r) => r.user ?? "" },
    { key: "key", label: t("col_key"), value: (r) => r.key ?? "" },
    { key: "tags", label: t("col_tags"), value: (r) => tagList(r.tags) },
    { key: "prompt_tokens", label: t("col_prompt"), num: true, value: (r) => fmtInt(r.prompt_tokens) },
    { key: "completion_tokens", label: t("col_completion"), num: true, value: (r) => fmtInt(r.completion_tokens) },
    { key: "cost", label: t("col_cost"), num: true,
      // no cost: unpriced when the record says so, else nothing was billed (refused, errors)
      value: (r) => (r.cost != null ? moneyEl(r.cost, r.currency)
        : el("span", { class: "qm-muted", text: r.unpriced ? t("unpriced") : "—", title: r.unpriced || null })) },
    { key: "latency_ms", label: t("col_latency"), num: true, value: (r) => (r.latency_ms == null ? "" : fmtNum(r.latency_ms)) },
    { key: "usage_estimated", label: t("col_estimated"), value: (r) => (r.usage_estimated ? t("yes") : "") },
    { key: "error", label: t("col_error"), value: (r) => r.error ?? "" },
  ].filter((c) => !optional.has(c.key) || some(c.key));
}

function tagList(tags) {
  const box = el("span", { class: "qm-tags" });
  for (const tag of tags || []) box.append(el("span", { class: "qm-tag", text: tag }));
  return box;
}

// Click a call: every field of its record below it.
function toggleRecord(row, tr) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("qm-record")) {
    next.remove();
    return;
  }
  const dl = el("dl", { class: "qm-fields" });
  for (const [k, v] of Object.entries(row)) {
    dl.append(el("dt", { text: k }), el("dd", { text: typeof v === "object" && v !== null ? JSON.stringify(v) : String(v ?? "") }));
  }
  const td = el("td", { colspan: String(tr.children.length) }, el("h4", { text: t("details") }), dl);
  tr.after(el("tr", { class: "qm-record" }, td));
}

function callRowsCsv(rows) {
  const cols = ["id", "time", "model", "status", "user", "key", "tags", "prompt_tokens",
    "completion_tokens", "cost", "currency", "latency_ms", "usage_estimated", "error"];
  return () => [cols, ...rows.map((r) => cols.map((c) => (c === "tags" ? (r.tags || []).join(";") : r[c])))];
}

function select(id, options, value, onChange) {
  const s = el("select", { id, on: { change: () => onChange(s.value) } });
  for (const [v, label] of options) s.append(el("option", { value: v, text: label }));
  s.value = value;
  return s;
}

Object.assign(QM, { table, csvLink, callColumns, toggleRecord, callRowsCsv, select });
QM.parts = [...(QM.parts || []), "tables"];
