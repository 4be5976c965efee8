// qwen-meter dashboard, part 6: charts, drawn with the vendored Apache ECharts (a plain script
// loaded before the parts): the chart builder, the stacked series charts and budget burn-downs.

const QM = globalThis.QM;
const { FONT, page, t, fmtNum, moneyText, el, bucketLabel, nextBucket, drill } = QM;

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
  if (!groups.size) QM.emptyState(view);
}

Object.assign(QM, { disposeCharts, tooltipNode, makeChart, chartBox, burnChart, drawSeries });
QM.parts = [...(QM.parts || []), "charts"];
