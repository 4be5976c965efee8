// qwen-meter dashboard, part 9 (last): drawing a view (render / draw, with the messages around
// it), the admin-token form, the page's event wiring, and the start.

const QM = globalThis.QM || {}; // {}: no part loaded; said below
const { VIEWS, page, stored, pickLang, t, el, $, message, addDays, query, setQuery, hasFilters,
  PageError, AuthError, api, readSnapshot, drawFrame, drawValues, addFilter, disposeCharts,
  RENDERERS, armRefresh, refreshText } = QM;

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

Object.assign(QM, { render });
QM.parts = [...(QM.parts || []), "app"];

// The parts in index.html's order: one that did not load (a file missing from this
// installation, a script error) is named, rather than the page staying at "Loading…".
const PARTS = ["i18n", "core", "api", "snapshot", "filters", "tables", "charts", "views", "refresh"];

try {
  const missing = PARTS.filter((part) => !QM.parts.includes(part));
  if (missing.length) throw new Error(`${missing.map((part) => `assets/${part}.js`).join(", ")} did not load`);
  start();
} catch (e) {
  // never a blank page: whatever broke is said in words
  const box = document.getElementById("qm-messages") || document.body;
  const p = document.createElement("p");
  p.className = "qm-msg qm-msg-error";
  p.textContent = `The page failed: ${e && e.message ? e.message : e}`;
  box.append(p);
}
