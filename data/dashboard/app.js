// The qwen-meter dashboard page: reads the JSON API (or the snapshot inlined in a static
// report) and draws it. Every piece of data reaches the DOM through textContent or DOM
// properties, never through innerHTML, so a tag or user name holding markup shows as text.

const DICTS = globalThis.QM_I18N;
const DIMS = ["model", "key", "user", "tag", "region", "status", "endpoint"];
const VIEWS = ["overview", "series", "top", "calls", "problems"];
const KINDS = ["refused", "error", "estimated", "cancelled", "lost"];
const SYMBOLS = { CNY: "¥", RMB: "¥", USD: "$", EUR: "€", GBP: "£", HKD: "HK$", SGD: "S$", JPY: "JP¥" };
// Chinese fonts first among the fallbacks, so canvas text (the charts) finds CJK glyphs too.
const FONT = 'system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", ' +
  '"Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei", sans-serif';
const PAGE = 50;

const page = {
  lang: "en",
  meta: null,
  snapshot: null,
  charts: [],
  gen: 0,
  timer: null,
  paused: false,
  inflight: 0,
  lastRefresh: null,
};

// Storage can be refused (a file:// page in some browsers, privacy modes): then nothing is
// remembered, and nothing breaks.
function stored(area, key, value) {
  try {
    const store = globalThis[area];
    if (value === undefined) return store.getItem(key);
    if (value === null) store.removeItem(key);
    else store.setItem(key, value);
  } catch {
    return null;
  }
  return null;
}

// ---------------------------------------------------------------- words and numbers

function pickLang() {
  const saved = stored("localStorage", "qm.lang");
  if (saved && DICTS[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || "en"]) {
    const low = String(l).toLowerCase();
    if (low.startsWith("zh")) return "zh-CN";
    if (low.startsWith("en")) return "en";
  }
  return "en";
}

function t(key, vars) {
  const dict = DICTS[page.lang] || DICTS.en;
  let text = dict[key] ?? DICTS.en[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) text = text.split(`{${k}}`).join(String(v));
  return text;
}

function fmtInt(n) {
  return new Intl.NumberFormat(page.lang).format(Number(n || 0));
}

function fmtNum(n) {
  return new Intl.NumberFormat(page.lang, { maximumFractionDigits: 4 }).format(Number(n || 0));
}

// A money amount with its currency's symbol; small amounts keep four decimals so a cent's
// fraction stays visible. The exact decimal string rides along in data-amount / title.
function moneyText(amount, currency) {
  const value = Number(amount);
  const digits = Math.abs(value) > 0 && Math.abs(value) < 1 ? 4 : 2;
  const body = new Intl.NumberFormat(page.lang, {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(Math.abs(value));
  const sign = value < 0 ? "-" : "";
  if (currency === "unpriced" || currency == null) return `${sign}${body} (${t("unpriced")})`;
  const symbol = SYMBOLS[currency];
  return symbol ? `${sign}${symbol}${body}` : `${sign}${body} ${currency}`;
}

function moneyEl(amount, currency) {
  const span = el("span", { class: "qm-money", text: moneyText(amount, currency) });
  span.dataset.amount = String(amount);
  span.dataset.currency = String(currency ?? "unpriced");
  span.title = `${amount} ${currency ?? t("unpriced")}`;
  return span;
}

// One entry per currency, side by side: amounts in two currencies are never added.
function moneyList(map) {
  const box = el("span", { class: "qm-moneys" });
  const entries = Object.entries(map || {});
  if (!entries.length) box.append(el("span", { class: "qm-muted", text: "—" }));
  for (const [cur, amount] of entries) box.append(moneyEl(amount, cur));
  return box;
}

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === "data") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const $ = (id) => document.getElementById(id);

function message(kind, ...parts) {
  const box = el("div", { class: `qm-msg qm-msg-${kind}`, role: kind === "error" ? "alert" : "status" });
  box.dataset.kind = kind;
  box.append(...parts.map((p) => (p instanceof Node ? p : document.createTextNode(String(p)))));
  $("qm-messages").append(box);
  return box;
}

// The server's notices are English sentences; the known ones are said in the page's language.
const NOTICES = [
  [/^no calls match ([a-z_]+)=(.*)$/s, (m) => t("notice_no_match", { dim: t(`dim_${m[1]}`), value: m[2] })],
  [/^no calls in the last (\d+) days: showing the \d+ days up to the last call \((.*)\)$/s,
    (m) => t("notice_old_log", { n: m[1], last: m[2] })],
];

function noticeText(text) {
  if (page.lang === "en") return text;
  for (const [re, say] of NOTICES) {
    const m = re.exec(text);
    if (m) return say(m);
  }
  return text;
}

function showNotices(answer) {
  for (const n of (answer && answer.notices) || []) {
    const box = message("notice", noticeText(String(n)));
    box.title = String(n);
  }
}

// ---------------------------------------------------------------- the URL holds the state

function query() {
  return new URLSearchParams(location.search);
}

function setQuery(changes, { push = true, keepOffset = false } = {}) {
  const q = query();
  for (const [k, v] of Object.entries(changes)) {
    q.delete(k);
    if (Array.isArray(v)) for (const x of v) q.append(k, x);
    else if (v != null && v !== "") q.set(k, v);
  }
  if (!keepOffset && !("offset" in changes)) q.delete("offset");
  const url = `${location.pathname}?${q.toString()}${location.hash}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
  render();
}

function currentTz() {
  return query().get("tz") || (page.meta && page.meta.tz) || Intl.DateTimeFormat().resolvedOptions().timeZone;
}

// The query every data endpoint gets: range, zone, filters, drill-down window.
function apiParams(extra) {
  const q = query();
  const out = new URLSearchParams();
  out.set("tz", currentTz());
  for (const k of ["since", "until", "bucket_start", "bucket_end", "problem"]) {
    if (q.get(k)) out.set(k, q.get(k));
  }
  for (const d of DIMS) for (const v of q.getAll(d)) out.append(d, v);
  for (const [k, v] of Object.entries(extra || {})) if (v != null) out.set(k, v);
  return out;
}

function hasFilters() {
  const q = query();
  return DIMS.some((d) => q.getAll(d).length) ||
    ["since", "until", "bucket_start", "bucket_end", "problem"].some((k) => q.get(k));
}

// ---------------------------------------------------------------- talking to the server

class PageError extends Error {}

// Behind the gateway (/ui) the API wants the admin token as a Bearer header: the page asks for
// it once (a 401) and keeps it for this tab only (sessionStorage).
function authHeaders() {
  const token = stored("sessionStorage", "qm.token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

class AuthError extends Error {}

// While the server still loads the log it answers 503 {error: {code: "loading"}, loading: {...}}:
// the page says how far it got and asks again, then draws as usual.
function showLoading(state) {
  let box = $("qm-load-state");
  if (!box) {
    box = message("notice", "");
    box.id = "qm-load-state";
  }
  const total = Number(state.total || 0);
  const done = Math.min(Number(state.done || 0), total);
  const pct = total ? Math.floor((done * 100) / total) : 0;
  box.dataset.loading = String(pct);
  box.textContent = t("loading_log", {
    source: state.source || "", pct, mb: (done / 1e6).toFixed(0), total: (total / 1e6).toFixed(0),
  });
}

async function api(path, params) {
  for (;;) {
    const [resp, body] = await apiOnce(path, params);
    const err = (body && body.error) || {};
    if (resp && resp.status === 503 && err.code === "loading") {
      showLoading(body.loading || {});
      // sooner than Retry-After says (a second, for other clients): a local server is cheap to
      // ask, and the page paints as soon as the data is in
      const wait = Math.min(Number(resp.headers.get("Retry-After") || 1), 2) * 100;
      await new Promise((r) => setTimeout(r, wait));
      continue;
    }
    const box = $("qm-load-state");
    if (box) box.remove();
    return body;
  }
}

async function apiOnce(path, params) {
  if (page.snapshot) return [null, await fromSnapshot(path, params || new URLSearchParams())];
  const url = `api/${path}${params ? `?${params}` : ""}`;
  let resp;
  try {
    resp = await fetch(url, { headers: { Accept: "application/json", ...authHeaders() } });
  } catch (e) {
    throw new PageError(t("err_network", { detail: e.message || String(e) }));
  }
  const text = await resp.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    if (resp.status === 401) throw new AuthError("401");
    throw new PageError(t("err_bad_answer", { detail: `HTTP ${resp.status}` }));
  }
  if (resp.status === 401) throw new AuthError(((body && body.error) || {}).message || "401");
  if (resp.status === 503 && body && body.error && body.error.code === "loading") return [resp, body];
  if (!resp.ok) {
    const err = (body && body.error) || {};
    let msg = t("err_api", { message: err.message || `HTTP ${resp.status}` });
    if (err.param) msg += ` ${t("err_param", { param: err.param })}`;
    throw new PageError(msg);
  }
  return [resp, body];
}

function exportHref(table, extra) {
  return `api/export.csv?${apiParams({ table, ...extra })}`;
}

// ---------------------------------------------------------------- snapshot mode

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

// ---------------------------------------------------------------- dates in the chosen zone

function todayIn(tz) {
  // en-CA formats a date as YYYY-MM-DD; a zone the browser does not know (the server says
  // so in its own message) falls back to the browser's zone here
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz }).format(new Date());
  } catch {
    return new Intl.DateTimeFormat("en-CA").format(new Date());
  }
}

function addDays(isoDate, days) {
  const [y, m, d] = isoDate.split("-").map(Number);
  const when = new Date(Date.UTC(y, m - 1, d + days));
  return when.toISOString().slice(0, 10);
}

// Bucket labels straight from the server's ISO strings (already in the chosen zone): parsing
// them with Date would move them into the browser's zone.
function bucketLabel(iso, bucket) {
  const s = String(iso);
  return bucket === "hour" ? `${s.slice(5, 10)} ${s.slice(11, 16)}` : s.slice(0, 10);
}

function timeLabel(iso) {
  const s = String(iso || "");
  return s.length >= 19 ? `${s.slice(0, 10)} ${s.slice(11, 19)}` : s;
}

function nextBucket(buckets, i, bucket) {
  if (i + 1 < buckets.length) return buckets[i + 1];
  // the last bucket: its end is one hour / day later, same offset
  const s = String(buckets[i]);
  const step = bucket === "hour" ? 3600e3 : 86400e3;
  const offset = s.slice(19).replace(/^\.\d+/, "") || "Z";
  const end = new Date(Date.parse(s) + step);
  if (offset === "Z") return end.toISOString().replace(".000", "");
  const sign = offset[0] === "-" ? -1 : 1;
  const mins = sign * (Number(offset.slice(1, 3)) * 60 + Number(offset.slice(4, 6)));
  const local = new Date(end.getTime() + mins * 60e3).toISOString().slice(0, 19);
  return `${local}${offset}`;
}

// ---------------------------------------------------------------- charts

function disposeCharts() {
  for (const c of page.charts) c.dispose();
  page.charts = [];
}

function tooltipNode(title, lines) {
  // ECharts accepts DOM nodes from a formatter: names stay text, never markup
  const box = el("div", { class: "qm-tip" }, el("div", { class: "qm-tip-title", text: title }));
  for (const [name, value] of lines) box.append(el("div", {}, el("span", { text: `${name}: ` }), el("b", { text: value })));
  return box;
}

function makeChart(box, option, onClick) {
  if (!globalThis.echarts) {
    box.append(el("p", { class: "qm-muted", text: "charting library missing" }));
    return null;
  }
  // ECharts' own words (month names on time axes ...) in the page's language: it ships EN and ZH
  const chart = echarts.init(box, null, { renderer: "canvas", locale: page.lang === "zh-CN" ? "ZH" : "EN" });
  chart.setOption({
    textStyle: { fontFamily: FONT },
    animation: false,
    grid: { left: 60, right: 20, top: 40, bottom: 60, containLabel: true },
    ...option,
  });
  if (onClick) chart.on("click", onClick);
  page.charts.push(chart);
  return chart;
}

function chartBox(title, extraClass) {
  const box = el("div", { class: `qm-chart ${extraClass || ""}` });
  const card = el("section", { class: "qm-card" }, el("h3", { text: title }), box);
  return { card, box };
}

// ---------------------------------------------------------------- drill-down

function drill(filters) {
  const q = query();
  const changes = { view: "calls", offset: null };
  for (const [dim, value] of Object.entries(filters)) {
    if (dim === "window") {
      changes.bucket_start = value[0];
      changes.bucket_end = value[1];
    } else if (dim === "problem") {
      changes.problem = value;
    } else if (DIMS.includes(dim) && value != null && value !== "(other)") {
      const have = q.getAll(dim);
      changes[dim] = have.includes(value) ? have : [...have, value];
    }
  }
  setQuery(changes);
}

// ---------------------------------------------------------------- tables

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

// ---------------------------------------------------------------- views

function emptyState(view) {
  const box = el("div", { class: "qm-empty", role: "status" },
    el("p", { class: "qm-empty-title", text: t("empty") }),
    el("p", { text: t("empty_hint") }));
  const meta = page.meta;
  if (meta && meta.first && meta.last) {
    box.append(el("p", { text: t("data_covers", { first: timeLabel(meta.first), last: timeLabel(meta.last) }) }));
    if (!page.snapshot) {
      box.append(el("button", { class: "qm-btn", type: "button", text: t("show_all"),
        on: { click: () => setQuery(allRange()) } }));
    }
  }
  view.append(box);
}

function allRange() {
  const meta = page.meta;
  if (!meta || !meta.first || !meta.last) return { since: null, until: null };
  return { since: String(meta.first).slice(0, 10), until: addDays(String(meta.last).slice(0, 10), 1) };
}

// The days the range covers, both included, as the date boxes show them.
function shownRange() {
  const q = query();
  const meta = page.meta || {};
  const since = q.get("since") || meta.since;
  const until = q.get("until") || meta.until;
  if (!since || !until) return null;
  return `${String(since).slice(0, 10)} → ${addDays(String(until).slice(0, 10), -1)}`;
}

function statCard(label, value, key) {
  const card = el("div", { class: "qm-stat", data: { stat: key } },
    el("div", { class: "qm-stat-label", text: label }));
  const v = el("div", { class: "qm-stat-value" });
  v.append(value instanceof Node ? value : String(value));
  card.append(v);
  return card;
}

async function viewOverview(view, ready) {
  const params = apiParams();
  const [ov, daily] = await Promise.all([
    api("overview", params),
    api("series", apiParams({ metric: "cost", by: "none", bucket: "day" })).catch((e) => e),
  ]);
  if (!ready()) return;
  showNotices(ov);
  const tok = ov.tokens || {};
  const stats = el("div", { class: "qm-stats" },
    statCard(t("spend_range"), moneyList(ov.cost), "cost"),
    statCard(t("spend_today"), moneyList(ov.today), "today"),
    statCard(t("spend_month"), moneyList(ov.month), "month"),
    statCard(t("calls"), fmtInt(ov.calls), "calls"),
    statCard(t("input_tokens"), fmtInt(tok.input), "input"),
    statCard(t("output_tokens"), fmtInt(tok.output), "output"),
    statCard(t("cached_tokens"), fmtInt(tok.cached), "cached"),
    statCard(t("reasoning_tokens"), fmtInt(tok.reasoning), "reasoning"));
  view.append(stats);
  const range = shownRange();
  if (range) {
    stats.querySelector('[data-stat="cost"]').append(el("div", { class: "qm-stat-note", text: range }));
  }
  if (!ov.calls) emptyState(view);

  const probs = ov.problems || {};
  const pbox = el("div", { class: "qm-problem-chips" }, el("span", { text: `${t("problems")}: ` }));
  for (const k of KINDS) {
    pbox.append(el("button", { type: "button", class: `qm-pill ${probs[k] ? "qm-pill-warn" : ""}`,
      data: { kind: k }, text: `${t(`kind_${k}`)} ${fmtInt(probs[k])}`,
      on: { click: () => drill({ problem: k }) } }));
  }
  view.append(pbox);

  view.append(budgetsSection(ov.budgets || []));
  if (ov.live_state) view.append(liveState(ov.live_state));

  if (daily instanceof Error) {
    if (!page.snapshot) message("error", daily.message);
  } else if (ov.calls) {
    drawSeries(view, daily, t("spend"));
  }
}

function budgetsSection(budgets) {
  const sec = el("section", { class: "qm-budgets" }, el("h2", { text: t("budgets") }));
  if (!budgets.length) {
    sec.append(el("p", { class: "qm-muted", text: t("no_budgets") }));
    return sec;
  }
  const grid = el("div", { class: "qm-grid" });
  sec.append(grid);
  for (const b of budgets) {
    const scope = DICTS.en[`scope_${b.scope}`] ? t(`scope_${b.scope}`) : b.scope;
    const title = `${scope}${b.subject ? ` · ${b.subject}` : ""} · ${b.name}`;
    const { card, box } = chartBox(title, "qm-chart-small");
    card.classList.add("qm-budget");
    card.dataset.budget = `${b.scope}:${b.subject || ""}:${b.name}`;
    const fact = (key, label, amount) => [el("dt", { text: label }),
      el("dd", { data: { fact: key } }, moneyEl(amount, b.currency))];
    const facts = el("dl", { class: "qm-facts" },
      ...fact("limit", t("budget_limit"), b.limit),
      ...fact("spent", t("budget_spent"), b.spent),
      ...fact("remaining", t("budget_remaining"), b.remaining));
    if (b.forecast != null) facts.append(...fact("forecast", t("budget_forecast"), b.forecast));
    if (b.period) {
      const label = DICTS.en[`period_${b.period}`] ? t(`period_${b.period}`) : b.period;
      facts.append(el("dt", { text: t("period") }),
        el("dd", { text: `${label}: ${timeLabel(b.period_start)} → ${timeLabel(b.period_end)}` }));
    }
    card.insertBefore(facts, box);
    grid.append(card);
    requestAnimationFrame(() => burnChart(box, b));
  }
  return sec;
}

// Burn-down: the running spend, the limit, and the straight-line forecast to the period's end.
function burnChart(box, b) {
  if (!box.isConnected) return;
  const burn = (b.burn || []).map(([when, v]) => [Date.parse(when), Number(v)]);
  const series = [{ name: t("burn_actual"), type: "line", step: "end", data: burn, showSymbol: false, areaStyle: { opacity: 0.15 } }];
  const end = b.period_end ? Date.parse(b.period_end) : null;
  const start = b.period_start ? Date.parse(b.period_start) : (burn[0] || [null])[0];
  if (burn.length && end && b.forecast != null) {
    series.push({ name: t("burn_forecast"), type: "line", data: [burn[burn.length - 1], [end, Number(b.forecast)]],
      lineStyle: { type: "dashed" }, showSymbol: false });
  }
  if (start && end) {
    series.push({ name: t("burn_limit"), type: "line", data: [[start, Number(b.limit)], [end, Number(b.limit)]],
      lineStyle: { color: "#c0392b" }, itemStyle: { color: "#c0392b" }, showSymbol: false });
  }
  makeChart(box, {
    legend: { top: 0 },
    grid: { left: 10, right: 20, top: 36, bottom: 10, containLabel: true },
    tooltip: { trigger: "axis", formatter: (ps) => tooltipNode(new Date(ps[0].value[0]).toISOString().slice(0, 16).replace("T", " "),
      ps.map((p) => [p.seriesName, moneyText(p.value[1], b.currency)])) },
    xAxis: { type: "time", min: start || undefined, max: end || undefined },
    yAxis: { type: "value" },
    series,
  });
}

function liveState(state) {
  const sec = el("section", { class: "qm-live" }, el("h2", { text: t("live_state") }));
  for (const [key, label] of [["budgets", t("live_budgets")], ["limiter", t("live_limiter")]]) {
    const rows = state[key] || [];
    if (!rows.length) continue;
    const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    const show = (v) => (typeof v === "object" && v !== null ? JSON.stringify(v)
      : typeof v === "boolean" ? (v ? t("yes") : t("no")) : v);
    sec.append(table(cols.map((c) => ({ key: c, label: DICTS.en[`live_${c}`] ? t(`live_${c}`) : c,
      value: (r) => show(r[c]) })), rows, { caption: label,
      rowData: (r) => ({ budget: `${r.scope ?? ""}:${r.subject ?? ""}:${r.name ?? ""}` }) }));
  }
  return sec;
}

// A stacked bar chart per currency (cost) or one chart (tokens, calls); a click on a bar opens
// the calls of that bucket and that series' name.
function drawSeries(view, answer, title) {
  const groups = new Map();
  for (const s of answer.series || []) {
    const key = answer.metric === "cost" ? s.currency ?? "unpriced" : "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s);
  }
  const buckets = answer.buckets || [];
  const labels = buckets.map((b) => bucketLabel(b, answer.bucket));
  for (const [cur, list] of groups) {
    const heading = cur ? `${title} (${cur})` : title;
    const { card, box } = chartBox(heading);
    card.dataset.currency = cur;
    view.append(card);
    const fmt = (v) => (answer.metric === "cost" ? moneyText(v, cur) : fmtNum(v));
    makeChart(box, {
      legend: { type: "scroll", top: 0 },
      tooltip: { trigger: "item", formatter: (p) => tooltipNode(labels[p.dataIndex], [[p.seriesName, fmt(p.value)]]) },
      xAxis: { type: "category", data: labels },
      yAxis: { type: "value", name: cur || "" },
      series: list.map((s) => ({
        name: answer.by === "none" ? t(`metric_${answer.metric}`) : s.name === "(other)" ? t("other") : s.name,
        type: "bar", stack: "all", emphasis: { focus: "series" },
        data: (s.values || []).map(Number),
      })),
    }, (p) => {
      const s = list[p.seriesIndex];
      const filters = { window: [buckets[p.dataIndex], nextBucket(buckets, p.dataIndex, answer.bucket)] };
      if (answer.by && answer.by !== "none") filters[answer.by] = s.name;
      drill(filters);
    });
  }
  if (!groups.size) emptyState(view);
}

function select(id, options, value, onChange) {
  const s = el("select", { id, on: { change: () => onChange(s.value) } });
  for (const [v, label] of options) s.append(el("option", { value: v, text: label }));
  s.value = value;
  return s;
}

async function viewSeries(view, ready) {
  const q = query();
  const metric = q.get("metric") || "cost";
  const by = q.get("by") || "model";
  const bucket = q.get("bucket") || "day";
  const controls = el("div", { class: "qm-controls" },
    el("label", {}, `${t("metric")} `, select("qm-metric", ["cost", "tokens", "calls"].map((m) => [m, t(`metric_${m}`)]), metric,
      (v) => setQuery({ metric: v }))),
    el("label", {}, `${t("by")} `, select("qm-by", ["none", ...DIMS].map((d) => [d, t(`dim_${d}`)]), by,
      (v) => setQuery({ by: v }))),
    el("label", {}, `${t("bucket")} `, select("qm-bucket", [["hour", t("bucket_hour")], ["day", t("bucket_day")]], bucket,
      (v) => setQuery({ bucket: v }))),
    csvLink("series", { metric, by, bucket }, null),
    el("span", { class: "qm-muted", text: t("click_hint") }));
  const answer = await api("series", apiParams({ metric, by, bucket }));
  if (!ready()) return;
  showNotices(answer);
  view.append(controls);
  drawSeries(view, answer, t(`metric_${metric}`));
}

async function viewTop(view, ready) {
  const q = query();
  const by = q.get("top_by") || "model";
  const n = q.get("n") || "20";
  const answer = await api("top", apiParams({ by, n }));
  if (!ready()) return;
  showNotices(answer);
  view.append(el("div", { class: "qm-controls" },
    el("label", {}, `${t("by")} `, select("qm-top-by", DIMS.map((d) => [d, t(`dim_${d}`)]), by, (v) => setQuery({ top_by: v }))),
    el("label", {}, `${t("top_n")} `, select("qm-top-n", ["10", "20", "50", "100"].map((x) => [x, x]), n, (v) => setQuery({ n: v }))),
    el("span", { class: "qm-muted", text: t("click_hint") })));
  const rows = answer.rows || [];
  if (!rows.length) {
    emptyState(view);
    return;
  }
  const currencies = [...new Set(rows.flatMap((r) => Object.keys(r.cost || {})))];
  const columns = [
    { key: "name", label: t(`dim_${by}`), value: (r) => (r.name === "(other)" ? t("other") : r.name ?? "") },
    { key: "calls", label: t("calls"), num: true, value: (r) => fmtInt(r.calls) },
    { key: "input_tokens", label: t("input_tokens"), num: true, value: (r) => fmtInt(r.input_tokens) },
    { key: "output_tokens", label: t("output_tokens"), num: true, value: (r) => fmtInt(r.output_tokens) },
    // one cost column per currency: never one total across currencies
    ...currencies.map((c) => ({ key: `cost_${c}`, label: `${t("cost")} (${c})`, num: true,
      value: (r) => ((r.cost || {})[c] == null ? "" : moneyEl(r.cost[c], c)) })),
  ];
  const csvRows = () => [columns.map((c) => c.key), ...rows.map((r) => [r.name, r.calls, r.input_tokens, r.output_tokens,
    ...currencies.map((c) => (r.cost || {})[c] ?? "")])];
  const main = currencies[0];
  if (main) {
    const { card, box } = chartBox(`${t("cost")} (${main})`, "qm-chart-small");
    view.append(card);
    const shown = rows.filter((r) => (r.cost || {})[main] != null).slice(0, 15).reverse();
    makeChart(box, {
      grid: { left: 10, right: 30, top: 10, bottom: 10, containLabel: true },
      tooltip: { trigger: "item", formatter: (p) => tooltipNode(shown[p.dataIndex].name, [[t("cost"), moneyText(p.value, main)]]) },
      xAxis: { type: "value" },
      yAxis: { type: "category", data: shown.map((r) => r.name), axisLabel: { width: 220, overflow: "truncate" } },
      series: [{ type: "bar", data: shown.map((r) => Number(r.cost[main])) }],
    }, (p) => drill({ [by]: shown[p.dataIndex].name }));
  }
  view.append(table(columns, rows, {
    caption: `${t("view_top")} · ${t(`dim_${by}`)}`,
    csv: csvLink("top", { by, n }, csvRows),
    rowData: (r) => ({ name: String(r.name ?? "") }),
    onRow: (r) => drill({ [by]: r.name }),
  }));
}

async function viewCalls(view, ready) {
  const q = query();
  const order = q.get("order") || "time";
  const offset = Number(q.get("offset") || 0);
  const answer = await api("calls", apiParams({ order, offset: String(offset), limit: String(PAGE) }));
  if (!ready()) return;
  showNotices(answer);
  const rows = answer.rows || [];
  const total = Number(answer.total || 0);
  view.append(el("div", { class: "qm-controls" },
    el("label", {}, `${t("order")} `, select("qm-order", [["time", t("order_time")], ["cost", t("order_cost")]], order,
      (v) => setQuery({ order: v })))));
  if (!rows.length) {
    emptyState(view);
    return;
  }
  view.append(table(callColumns(rows), rows, {
    caption: t("view_calls"),
    csv: csvLink("calls", { order }, callRowsCsv(rows)),
    rowData: (r) => ({ id: String(r.id ?? "") }),
    onRow: toggleRecord,
  }));
  const pager = el("div", { class: "qm-pager" },
    el("button", { type: "button", class: "qm-btn", id: "qm-prev", text: t("prev"), disabled: offset <= 0,
      on: { click: () => setQuery({ offset: String(Math.max(0, offset - PAGE)) }) } }),
    el("span", { id: "qm-page", text: t("page_of", { from: offset + 1, to: offset + rows.length, total }) }),
    el("button", { type: "button", class: "qm-btn", id: "qm-next", text: t("next"), disabled: offset + rows.length >= total,
      on: { click: () => setQuery({ offset: String(offset + PAGE) }) } }));
  view.append(pager);
}

async function viewProblems(view, ready) {
  const answer = await api("problems", apiParams());
  if (!ready()) return;
  showNotices(answer);
  const rows = answer.rows || [];
  const currencies = [...new Set(rows.flatMap((r) => Object.keys(r.cost || {})))];
  const columns = [
    { key: "kind", label: t("kind"), value: (r) => t(`kind_${r.kind}`) },
    { key: "calls", label: t("calls"), num: true, value: (r) => fmtInt(r.calls) },
    ...currencies.map((c) => ({ key: `cost_${c}`, label: `${t("cost")} (${c})`, num: true,
      value: (r) => ((r.cost || {})[c] == null ? "" : moneyEl(r.cost[c], c)) })),
  ];
  const csvRows = () => [columns.map((c) => c.key), ...rows.map((r) => [r.kind, r.calls, ...currencies.map((c) => (r.cost || {})[c] ?? "")])];
  view.append(table(columns, rows, { caption: t("problems"), csv: csvLink("problems", {}, csvRows, true),
    rowData: (r) => ({ kind: r.kind }), onRow: (r) => drill({ problem: r.kind }) }));
  const recent = answer.recent || [];
  if (recent.length) {
    view.append(table(callColumns(recent), recent, { caption: t("recent_problems"), onRow: toggleRecord,
      rowData: (r) => ({ id: String(r.id ?? "") }),
      csv: csvLink("recent", {}, callRowsCsv(recent), true) }));
  } else if (!rows.some((r) => r.calls)) {
    view.append(el("p", { class: "qm-muted", text: "—" }));
  }
}

const RENDERERS = { overview: viewOverview, series: viewSeries, top: viewTop, calls: viewCalls, problems: viewProblems };

// ---------------------------------------------------------------- the frame around the views

function drawTabs() {
  const nav = $("qm-tabs");
  nav.replaceChildren();
  const current = query().get("view") || "overview";
  for (const v of VIEWS) {
    nav.append(el("a", { href: `?${withView(v)}`, class: `qm-tab ${v === current ? "qm-tab-on" : ""}`,
      data: { view: v }, "aria-current": v === current ? "page" : null, text: t(`view_${v}`),
      on: { click: (e) => { e.preventDefault(); setQuery({ view: v }); } } }));
  }
}

function withView(v) {
  const q = query();
  q.set("view", v);
  q.delete("offset");
  return q.toString();
}

function drawStaticTexts() {
  document.documentElement.lang = page.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("qm-lang").textContent = t("lang_switch");
  $("qm-lang").title = t("lang_switch");
  $("qm-add").textContent = t("add_filter");
  const dim = $("qm-dim");
  const chosen = dim.value || "model";
  dim.replaceChildren(...DIMS.map((d) => el("option", { value: d, text: t(`dim_${d}`) })));
  dim.value = chosen;
  drawPresets();
  drawRefreshButton();
}

function drawPresets() {
  const box = $("qm-presets");
  box.replaceChildren();
  if (page.snapshot) return;
  const today = todayIn(currentTz());
  const presets = [
    ["preset_default", { since: null, until: null }],
    ["preset_today", { since: today, until: addDays(today, 1) }],
    ["preset_7d", { since: addDays(today, -6), until: addDays(today, 1) }],
    ["preset_30d", { since: addDays(today, -29), until: addDays(today, 1) }],
    ["preset_month", { since: `${today.slice(0, 8)}01`, until: addDays(today, 1) }],
    ["preset_all", allRange()],
  ];
  for (const [key, range] of presets) {
    box.append(el("button", { type: "button", class: "qm-pill", data: { preset: key }, text: t(key),
      on: { click: () => setQuery(range) } }));
  }
}

function drawValues() {
  const dim = $("qm-dim").value;
  const values = (page.meta && page.meta.dims && page.meta.dims[dim]) || [];
  $("qm-values").replaceChildren(...values.map((v) => el("option", { value: String(v) })));
}

function drawChips() {
  const q = query();
  const box = $("qm-chips");
  box.replaceChildren();
  const chip = (label, value, remove, key) => {
    const c = el("span", { class: "qm-chip", data: { dim: key, value } },
      el("span", { class: "qm-chip-dim", text: `${label}: ` }), el("span", { class: "qm-chip-value", text: value }),
      el("button", { type: "button", class: "qm-chip-x", "aria-label": t("remove_filter"), title: t("remove_filter"), text: "×",
        on: { click: remove } }));
    box.append(c);
  };
  for (const d of DIMS) {
    const values = q.getAll(d);
    for (const v of values) chip(t(`dim_${d}`), v, () => setQuery({ [d]: values.filter((x) => x !== v) }), d);
  }
  if (q.get("problem")) chip(t("dim_problem"), t(`kind_${q.get("problem")}`), () => setQuery({ problem: null }), "problem");
  if (q.get("bucket_start")) {
    chip(t("dim_window"), `${timeLabel(q.get("bucket_start"))} → ${timeLabel(q.get("bucket_end"))}`,
      () => setQuery({ bucket_start: null, bucket_end: null }), "window");
  }
}

function drawRange() {
  const q = query();
  const since = $("qm-since");
  const until = $("qm-until");
  since.value = q.get("since") ? q.get("since").slice(0, 10) : "";
  // the query's `until` is exclusive (as in the API and the CLI); the box shows the last day
  until.value = q.get("until") ? addDays(q.get("until").slice(0, 10), -1) : "";
  since.disabled = until.disabled = Boolean(page.snapshot);
}

function drawTz() {
  const sel = $("qm-tz");
  const tz = currentTz();
  let zones = [];
  try {
    zones = Intl.supportedValuesOf("timeZone");
  } catch {
    zones = [];
  }
  const all = [...new Set([tz, (page.meta && page.meta.tz) || "UTC", "UTC", ...zones])].filter(Boolean).sort();
  if (sel.options.length !== all.length) sel.replaceChildren(...all.map((z) => el("option", { value: z, text: z })));
  sel.value = tz;
  // a snapshot's numbers were computed in one zone
  sel.disabled = Boolean(page.snapshot);
}

function drawRefreshButton() {
  const btn = $("qm-refresh");
  const live = page.meta && page.meta.live && !page.snapshot;
  btn.hidden = !live;
  if (live) btn.textContent = page.paused ? t("refresh_resume") : t("refresh_pause");
}

function armRefresh() {
  clearInterval(page.timer);
  page.timer = null;
  const meta = page.meta;
  if (!meta || !meta.live || page.snapshot || page.paused) return;
  const seconds = Math.max(1, Number(meta.refresh_seconds || 10));
  page.timer = setInterval(tick, seconds * 1000);
}

// What a refresh compares: the view is drawn again only when the log gained (or lost) lines,
// so a record the user opened or a tooltip stays put while nothing changes.
function metaSignature(meta) {
  return JSON.stringify([meta.records, meta.first, meta.last, meta.skipped && meta.skipped.count]);
}

async function tick() {
  if (document.hidden || page.inflight || page.paused) return;
  const gen = page.gen;
  const seen = page.meta ? metaSignature(page.meta) : null;
  let meta;
  try {
    meta = await api("meta", new URLSearchParams({ tz: currentTz() }));
  } catch {
    return; // the next tick tries again; a view the user opens says what is wrong
  }
  // Paused while the question was out: the answer is dropped, not drawn.
  if (gen !== page.gen || page.inflight || page.paused) return;
  if (metaSignature(meta) === seen) {
    page.lastRefresh = new Date();
    const info = document.querySelector("#qm-messages .qm-msg-info");
    if (info) info.textContent = refreshText();
    return;
  }
  render({ reloadMeta: true, quiet: true, timer: true });
}

function refreshText() {
  return `${t("refresh_every", { n: page.meta.refresh_seconds || 10 })} · ${t("refreshed", {
    time: (page.lastRefresh || new Date()).toLocaleTimeString(page.lang) })}`;
}

function frameMessages() {
  if (page.snapshot) message("notice", t("snapshot"));
  if (page.snapshot && hasFilters()) message("notice", t("snapshot_filtered"));
  const skipped = page.meta && page.meta.skipped;
  if (skipped && skipped.count) {
    const list = el("ul");
    for (const ex of skipped.examples || []) list.append(el("li", { text: t("skipped_line", ex) }));
    const box = message("warning", t("skipped", { n: skipped.count }), list);
    box.id = "qm-skipped";
  }
  if (page.meta && page.meta.live && !page.snapshot && !page.paused) {
    message("info", refreshText());
  }
}

async function loadMeta() {
  const params = new URLSearchParams();
  const tz = query().get("tz");
  if (tz) params.set("tz", tz);
  page.meta = await api("meta", params);
  if (page.meta.title) {
    $("qm-title").textContent = page.meta.title;
    document.title = page.meta.title;
  }
  $("qm-source").textContent = page.meta.source || "";
  $("qm-version").textContent = page.meta.version ? `qwen-meter ${page.meta.version}` : "qwen-meter";
}

async function render(options = {}) {
  page.inflight += 1;
  try {
    await draw(options);
  } finally {
    page.inflight -= 1;
  }
}

async function draw({ reloadMeta = false, quiet = false, timer = false } = {}) {
  const gen = ++page.gen;
  if (!timer) page.lastRefresh = new Date();
  const view = $("qm-view");
  const name = VIEWS.includes(query().get("view")) ? query().get("view") : "overview";
  try {
    if (reloadMeta || !page.meta) await loadMeta();
  } catch (e) {
    if (gen !== page.gen) return;
    // the frame stays (tabs, filters, zone) so the cause can be fixed from the page
    page.meta = null;
    drawFrame();
    $("qm-messages").replaceChildren();
    showError(e);
    view.replaceChildren();
    view.dataset.ready = String(gen);
    return;
  }
  if (gen !== page.gen) return;
  drawFrame();
  armRefresh();
  const fresh = el("div", { class: "qm-view-inner", data: { view: name } });
  if (!quiet) {
    disposeCharts();
    view.replaceChildren(el("p", { class: "qm-muted qm-loading", text: t("loading") }));
  }
  // Called by the view once its data is there: the old view and messages go, the new box goes
  // in (charts need a box in the page to measure), unless a newer render started meanwhile.
  const ready = () => {
    if (gen !== page.gen) return false;
    disposeCharts();
    $("qm-messages").replaceChildren();
    frameMessages();
    view.replaceChildren(fresh);
    return true;
  };
  try {
    await RENDERERS[name](fresh, ready);
  } catch (e) {
    if (gen !== page.gen) return;
    $("qm-messages").replaceChildren();
    frameMessages();
    showError(e);
    view.replaceChildren();
    view.dataset.ready = String(gen);
    return;
  }
  if (gen !== page.gen) return;
  page.lastRefresh = new Date();
  const info = document.querySelector("#qm-messages .qm-msg-info");
  if (info) info.textContent = refreshText();
  // tests and scripts wait on data-ready (a drawn view); a refresh counts in data-refreshed
  if (timer) view.dataset.refreshed = String(Number(view.dataset.refreshed || 0) + 1);
  view.dataset.ready = String(gen);
}

function tokenForm(detail) {
  const input = el("input", { type: "password", id: "qm-token", autocomplete: "current-password" });
  const form = el("form", { class: "qm-token" },
    el("label", {}, `${t("token_label")} `, input),
    el("button", { type: "submit", class: "qm-btn", text: t("token_use") }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) stored("sessionStorage", "qm.token", input.value.trim());
    render({ reloadMeta: true });
  });
  message("error", t("token_needed", { detail }), form);
}

function showError(e) {
  if (e instanceof AuthError) {
    stored("sessionStorage", "qm.token", null); // a wrong one is forgotten
    tokenForm(e.message);
  }
  else message("error", e instanceof PageError ? e.message : t("err_script", { detail: e.message || String(e) }));
}

function drawFrame() {
  drawStaticTexts();
  drawTabs();
  drawChips();
  drawRange();
  drawTz();
  drawValues();
}

function addFilter() {
  const dim = $("qm-dim").value;
  const value = $("qm-value").value.trim();
  if (!DIMS.includes(dim) || !value) return;
  const have = query().getAll(dim);
  $("qm-value").value = "";
  if (!have.includes(value)) setQuery({ [dim]: [...have, value] });
}

function wire() {
  $("qm-lang").addEventListener("click", () => {
    page.lang = page.lang === "zh-CN" ? "en" : "zh-CN";
    stored("localStorage", "qm.lang", page.lang);
    render({ quiet: true });
  });
  $("qm-tz").addEventListener("change", (e) => {
    const q = query();
    q.set("tz", e.target.value);
    history.pushState(null, "", `${location.pathname}?${q}`);
    render({ reloadMeta: true });
  });
  $("qm-since").addEventListener("change", (e) => setQuery({ since: e.target.value || null }));
  $("qm-until").addEventListener("change", (e) => setQuery({ until: e.target.value ? addDays(e.target.value, 1) : null }));
  $("qm-dim").addEventListener("change", drawValues);
  $("qm-add").addEventListener("click", addFilter);
  $("qm-value").addEventListener("keydown", (e) => { if (e.key === "Enter") addFilter(); });
  $("qm-refresh").addEventListener("click", () => {
    page.paused = !page.paused;
    render({ quiet: true });
  });
  window.addEventListener("popstate", () => render({ reloadMeta: true }));
  window.addEventListener("resize", () => { for (const c of page.charts) c.resize(); });
}

function start() {
  page.lang = pickLang();
  try {
    page.snapshot = readSnapshot();
  } catch (e) {
    message("error", t("err_script", { detail: e.message }));
    return;
  }
  wire();
  render();
}

try {
  start();
} catch (e) {
  // never a blank page: whatever broke is said in words
  const box = document.getElementById("qm-messages") || document.body;
  const p = document.createElement("p");
  p.className = "qm-msg qm-msg-error";
  p.textContent = `The page failed: ${e && e.message ? e.message : e}`;
  box.append(p);
}
