// qwen-meter dashboard, part 1 (after i18n.js): the namespace every part shares, the page's
// state, words and numbers (language, money), DOM helpers, messages and dates.
//
// How the parts fit: each file is a module script (type="module": its own scope, strict mode,
// run in document order once the page is parsed; it imports nothing), loaded in order by
// index.html; the static report inlines them in the same order. They share one object,
// globalThis.QM: a part takes what earlier parts put there when it loads, and a name from a
// later part when it calls it (QM.render ...), then adds its own names, and its name to
// QM.parts (app.js names a part that did not load).
// Every piece of data reaches the DOM through textContent or DOM properties, never through
// innerHTML, so a tag or user name holding markup shows as text.

const QM = (globalThis.QM ??= {});

const DICTS = QM.dicts; // i18n.js
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

Object.assign(QM, { DICTS, DIMS, VIEWS, KINDS, FONT, PAGE, page, stored, pickLang, t, fmtInt, fmtNum, moneyText, moneyEl, moneyList, el, $, message, showNotices, todayIn, addDays, bucketLabel, timeLabel, nextBucket });
QM.parts = [...(QM.parts || []), "core"];
