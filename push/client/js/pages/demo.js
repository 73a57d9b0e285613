// The demo page: /?topic=a&topic=b subscribes to those topics with the
// Herald JS client and lists every event live; a form publishes. Resets,
// moves and reconnects show as lines of their own.
import { subscribe, publish } from "../src/herald.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const topics = params.getAll("topic").flatMap((t) => t.split(",")).map((t) => t.trim()).filter(Boolean);
if (topics.length === 0) topics.push("demo");
const base = location.origin;
const list = $("events");
const MAX = 500;
let count = 0;

$("topics").value = topics.join(", ");
$("pub-topic").value = topics[0];
$("token").value = sessionStorage.getItem("herald:demo:token") || "";
$("token").addEventListener("change", () => sessionStorage.setItem("herald:demo:token", $("token").value.trim()));
const getToken = () => $("token").value.trim();

function add(li) {
  list.prepend(li);
  while (list.children.length > MAX) list.lastChild.remove();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function note(kind, text) {
  const li = el("li", "note " + kind, `${new Date().toLocaleTimeString()} — ${text}`);
  li.dataset.kind = kind;
  add(li);
}

function showEvent(e) {
  const li = el("li", "event");
  li.dataset.kind = "event";
  const head = el("div", "head");
  head.append(el("span", "topic", e.topic || "?"), el("span", "type", e.type), el("span", "time", new Date().toLocaleTimeString()),
    el("span", "pos", `${e.origin}#${e.offset}`));
  li.append(head, el("pre", "data", e.data));
  add(li);
  $("count").textContent = String(++count);
}

const sub = subscribe(topics, {
  urls: [base],
  persist: "herald:demo:" + [...topics].sort().join(","),
  getToken: () => (getToken() ? getToken() : ""),
  transport: "fetch",
  onEvent: showEvent,
  onReset: (streams) => {
    for (const s of streams) {
      const lost = s.lost_to ? `${s.lost_from}–${s.lost_to}` : s.lost_from ? `from ${s.lost_from}` : "none";
      note("reset", `reset ${s.topic}@${s.origin}: ${s.reason}, lost ${lost}, continues at ${s.continue_from}`);
    }
  },
  onMoved: (m) => note("moved", `moved (${m.reason}) to ${(m.alternates || []).join(", ") || "another region"}`),
  onStatus: (s) => {
    if (s.state === "open") {
      $("conn").textContent = `connected to ${s.node} (${s.origin}) via ${s.transport}${s.resumed ? ", resumed" : ""}`;
      note("reconnect", `connected to ${s.node} in ${s.origin}${s.resumed ? " (resumed from cursor)" : ""}`);
    } else if (s.state === "reconnecting") {
      $("conn").textContent = `reconnecting in ${s.delay} ms (${s.reason})`;
      note("reconnect", `disconnected (${s.reason}); reconnecting in ${s.delay} ms`);
    } else if (s.state === "failed" && s.error) {
      note("reset", `refused: ${s.error.message}`);
    }
    $("cursor").textContent = sub && sub.cursor ? `cursor ${sub.cursor}` : "";
  },
});
window.heraldDemo = sub;

$("topics-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams();
  for (const t of $("topics").value.split(",").map((x) => x.trim()).filter(Boolean)) q.append("topic", t);
  location.search = q.toString();
});

$("publish-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("pub-result");
  out.textContent = "publishing…";
  try {
    const r = await publish($("pub-topic").value.trim(), $("pub-type").value.trim(), $("pub-data").value, {
      urls: [base],
      getToken: () => getToken(),
    });
    out.textContent = `stored: ${r.topic}@${r.origin} #${r.offset}${r.duplicate ? " (duplicate)" : ""}`;
  } catch (err) {
    out.textContent = `failed: ${err.message}`;
  }
});
