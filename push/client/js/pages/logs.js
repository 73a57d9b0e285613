// The log tail: subscribes to log types (topics such as logs.<app>.<level>)
// and shows each JSON log line as it is published. Follow/pause, level and
// text filters; after a reload it shows the lines it had and resumes the
// stream where it was (cursor and lines in sessionStorage).
import { subscribe } from "../src/herald.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let topics = params.getAll("topic").flatMap((t) => t.split(",")).map((t) => t.trim()).filter(Boolean);
if (topics.length === 0) topics = ["logs.app.error", "logs.app.warn", "logs.app.info"];
const key = "herald:logs:" + [...topics].sort().join(",");
const KEEP = 1000; // lines kept in memory and in sessionStorage
const listEl = $("lines");

/** @type {{topic:string, offset:number, origin:string, level:string, time:string, msg:string, fields:string, raw:string}[]} */
let lines = [];
try {
  lines = JSON.parse(sessionStorage.getItem(key + ":lines") || "[]");
} catch {
  lines = [];
}
let following = true;
let pending = 0; // lines that arrived while paused
let saveTimer = 0;

$("topics").value = topics.join(", ");

/** parse turns a published log line into what the view shows. */
function parse(e) {
  const fromTopic = e.topic.split(".").at(-1);
  let level = fromTopic, time = "", msg = e.data, fields = "";
  try {
    const j = JSON.parse(e.data);
    if (j && typeof j === "object" && !Array.isArray(j)) {
      level = String(j.level || j.severity || fromTopic).toLowerCase();
      time = String(j.time || j.ts || j.timestamp || "");
      msg = String(j.msg ?? j.message ?? "");
      fields = Object.entries(j)
        .filter(([k]) => !["level", "severity", "time", "ts", "timestamp", "msg", "message"].includes(k))
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" ");
    }
  } catch {
    /* not JSON: shown raw */
  }
  if (level === "warning") level = "warn";
  return { topic: e.topic, origin: e.origin, offset: e.offset, level, time, msg, fields, raw: e.data };
}

function levelsOn() {
  return new Set([...document.querySelectorAll("input.lvl")].filter((c) => c.checked).map((c) => c.value));
}

function visible(l, lv, text) {
  const known = ["error", "warn", "info", "debug"].includes(l.level);
  if (known && !lv.has(l.level)) return false;
  if (!lv.has("error") && (l.level === "fatal" || l.level === "panic")) return false;
  return !text || l.raw.toLowerCase().includes(text) || l.topic.toLowerCase().includes(text);
}

function row(l) {
  const li = document.createElement("li");
  li.dataset.level = l.level;
  const t = document.createElement("span");
  t.className = "time";
  const d = l.time ? new Date(l.time) : null;
  t.textContent = d && !isNaN(d) ? d.toLocaleTimeString() : l.time || "";
  const lv = document.createElement("span");
  lv.className = "lvl-" + l.level;
  lv.textContent = l.level.toUpperCase();
  const m = document.createElement("span");
  m.className = "msg";
  m.textContent = l.msg + " ";
  const f = document.createElement("span");
  f.className = "fields";
  f.textContent = `${l.fields}${l.fields ? " " : ""}[${l.topic}]`;
  m.append(f);
  li.append(t, lv, m);
  return li;
}

function render() {
  const lv = levelsOn();
  const text = $("filter").value.trim().toLowerCase();
  const frag = document.createDocumentFragment();
  for (const l of lines) if (visible(l, lv, text)) frag.append(row(l));
  listEl.replaceChildren(frag);
  if (following) listEl.lastElementChild?.scrollIntoView({ block: "end" });
  showState();
}

function showState(extra) {
  const shown = listEl.children.length;
  $("state").textContent = `${shown} of ${lines.length} lines shown` + (pending ? `, ${pending} new while paused` : "") + (extra ? ` — ${extra}` : "");
}

function flush() {
  clearTimeout(saveTimer);
  try {
    sessionStorage.setItem(key + ":lines", JSON.stringify(lines));
  } catch {
    /* full: the stream still resumes from its cursor */
  }
}

// The cursor is saved at every event; the lines at most every 200 ms and
// when the page goes away, so a reload shows every line it had.
function save() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(flush, 200);
}
addEventListener("pagehide", flush);

function append(l) {
  lines.push(l);
  if (lines.length > KEEP) lines.splice(0, lines.length - KEEP);
  save();
  if (!following) {
    pending++;
    showState();
    return;
  }
  if (visible(l, levelsOn(), $("filter").value.trim().toLowerCase())) {
    listEl.append(row(l));
    while (listEl.children.length > KEEP) listEl.firstElementChild.remove();
    listEl.lastElementChild.scrollIntoView({ block: "end" });
  }
  showState();
}

function marker(text) {
  append({ topic: "herald", origin: "", offset: 0, level: "herald", time: new Date().toISOString(), msg: text, fields: "", raw: text });
}

const sub = subscribe(topics, {
  urls: [location.origin],
  persist: key,
  transport: "fetch",
  onEvent: (e) => append(parse(e)),
  onReset: (streams) => streams.forEach((s) => marker(`reset ${s.topic}: ${s.reason}, lost ${s.lost_from}–${s.lost_to || "?"}`)),
  onMoved: (m) => marker(`moved to ${(m.alternates || []).join(", ")}`),
  onStatus: (s) => {
    if (s.state === "open") $("conn").textContent = `tailing ${topics.length} log types on ${s.node} (${s.origin})${s.resumed ? ", resumed" : ""}`;
    if (s.state === "reconnecting") $("conn").textContent = `reconnecting (${s.reason})…`;
  },
});
window.heraldLogs = sub;

$("follow").addEventListener("click", () => {
  following = !following;
  $("follow").textContent = following ? "Pause" : "Follow";
  $("follow").setAttribute("aria-pressed", String(following));
  if (following) {
    pending = 0;
    render();
  } else showState();
});
$("clear").addEventListener("click", () => {
  lines = [];
  save();
  render();
});
$("filter").addEventListener("input", render);
document.querySelectorAll("input.lvl").forEach((c) => c.addEventListener("change", render));
$("topics-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams();
  for (const t of $("topics").value.split(",").map((x) => x.trim()).filter(Boolean)) q.append("topic", t);
  location.search = q.toString();
});
render();
