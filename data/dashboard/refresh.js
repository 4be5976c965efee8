// qwen-meter dashboard, part 8: live refresh and pause. A live source (meta.live) is asked for
// its meta every refresh_seconds; the view is drawn again only when the records changed.

const QM = globalThis.QM;
const { page, t, $, currentTz, api } = QM;

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
  QM.render({ reloadMeta: true, quiet: true, timer: true });
}

function refreshText() {
  return `${t("refresh_every", { n: page.meta.refresh_seconds || 10 })} · ${t("refreshed", {
    time: (page.lastRefresh || new Date()).toLocaleTimeString(page.lang) })}`;
}

Object.assign(QM, { drawRefreshButton, armRefresh, refreshText });
QM.parts = [...(QM.parts || []), "refresh"];
