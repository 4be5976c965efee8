// qwen-meter dashboard, part 2: the URL holds the state (view, range, zone, filters), and
// talking to the server: the JSON API with the admin token, the 503 "loading" wait, errors
// in words. A snapshot page asks snapshot.js instead of the server.

const QM = globalThis.QM;
const { DIMS, page, stored, t, $, message } = QM;

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
  QM.render(); // app.js, the last part
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
  if (page.snapshot) return [null, await QM.fromSnapshot(path, params || new URLSearchParams())];
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

Object.assign(QM, { query, setQuery, currentTz, apiParams, hasFilters, PageError, AuthError, authHeaders, api, exportHref });
QM.parts = [...(QM.parts || []), "api"];
