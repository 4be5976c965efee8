// qwen-meter dashboard, part 7: the five views (overview, over time, top, calls, problems),
// each drawn from its API answer into a fresh box, and the empty state they share.

const QM = globalThis.QM;
const { DICTS, DIMS, KINDS, PAGE, page, t, fmtInt, moneyText, moneyEl, moneyList, el, message,
  showNotices, addDays, timeLabel, query, setQuery, apiParams, api, drill, allRange, table,
  csvLink, callColumns, toggleRecord, callRowsCsv, select, tooltipNode, makeChart, chartBox,
  burnChart, drawSeries } = QM;

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

Object.assign(QM, { emptyState, RENDERERS });
QM.parts = [...(QM.parts || []), "views"];
