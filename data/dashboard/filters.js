// qwen-meter dashboard, part 4: the frame around the views: tabs, date range and presets, time
// zone, language texts, the filter bar and its chips, and the drill-down a click starts.

const QM = globalThis.QM;
const { DIMS, VIEWS, page, t, el, $, todayIn, addDays, timeLabel, query, setQuery, currentTz } = QM;

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

function allRange() {
  const meta = page.meta;
  if (!meta || !meta.first || !meta.last) return { since: null, until: null };
  return { since: String(meta.first).slice(0, 10), until: addDays(String(meta.last).slice(0, 10), 1) };
}

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
  QM.drawRefreshButton(); // refresh.js
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

Object.assign(QM, { drill, allRange, drawFrame, drawValues, addFilter });
QM.parts = [...(QM.parts || []), "filters"];
