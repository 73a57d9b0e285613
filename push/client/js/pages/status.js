// The status page of the admin listener: reads the admin JSON endpoints
// (/v1/node, /v1/cluster/members, /v1/region, /v1/protection) every few
// seconds and shows them. Read-only; it changes nothing.
const $ = (id) => document.getElementById(id);
const version = document.querySelector('meta[name="herald-version"]').content;
const EVERY = Number(new URLSearchParams(location.search).get("every")) || 2000;

async function get(path) {
  const r = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(5000) });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function rows(tbody, items, make) {
  const frag = document.createDocumentFragment();
  for (const it of items) {
    const tr = document.createElement("tr");
    tr.append(...make(it));
    frag.append(tr);
  }
  if (items.length === 0) {
    const tr = document.createElement("tr");
    const td = cell("none", "muted");
    td.colSpan = 6;
    tr.append(td);
    frag.append(tr);
  }
  tbody.replaceChildren(frag);
}

const stateClass = (s) => ({ alive: "ok", closed: "ok", serving: "ok", draining: "warn", "half-open": "warn", suspect: "warn", open: "bad", dead: "bad", left: "muted" })[s] || "";

function stat(k, v) {
  const d = document.createElement("div");
  d.className = "stat";
  const n = document.createElement("div");
  n.className = "n";
  n.textContent = String(v);
  const l = document.createElement("div");
  l.className = "k";
  l.textContent = k;
  d.append(n, l);
  return d;
}

function lag(o) {
  if (o.local) return "local";
  if (o.lag_seconds < 0) return "unknown";
  return o.lag_seconds < 1 ? `${Math.round(o.lag_seconds * 1000)} ms` : `${o.lag_seconds.toFixed(1)} s`;
}

async function refresh() {
  try {
    const [node, members, region, prot] = await Promise.all([get("v1/node"), get("v1/cluster/members"), get("v1/region"), get("v1/protection")]);
    $("node").textContent = node.name;
    document.title = `Herald ${node.name}`;
    $("where").textContent = `region ${node.region} · version ${version} · ${node.durable ? "durable store" : "in-memory store"}${node.draining ? " · DRAINING" : ""}`;
    const s = node.stats || {};
    $("stats").replaceChildren(
      stat("streams", node.streams), stat("target", node.target || "–"), stat("connected", s.connected ?? 0), stat("delivered", s.delivered ?? 0),
      stat("replayed", s.replayed ?? 0), stat("resets", s.resets ?? 0), stat("slow cut-offs", s.slow_cutoffs ?? 0), stat("lag cut-offs", s.lag_cutoffs ?? 0),
    );
    rows($("members"), members.members || [], (m) => [
      cell(m.name + (m.name === members.self ? " (this node)" : "")), cell(m.region || ""), cell(m.state, stateClass(m.state)),
      cell(String(m.streams ?? 0)), cell(String(m.target || "–"), "opt"), cell(String(m.health ?? 0), "opt"),
    ]);
    const byName = new Map((region.regions || []).map((r) => [r.name, r]));
    rows($("regions"), region.origins || [], (o) => {
      const r = byName.get(o.origin) || {};
      return [cell(o.origin + (o.local ? " (here)" : "")), cell(lag(o)), cell(o.local ? "–" : o.link_up ? "up" : "down", o.local ? "" : o.link_up ? "ok" : "bad"),
        cell(r.serving !== undefined ? String(r.serving) : "–", "opt"), cell((r.urls || []).join(" "), "opt")];
    });
    $("evac").className = "pill " + (region.evacuating ? "bad" : "ok");
    $("evac").textContent = region.evacuating ? `evacuating (order ${region.evacuation.id}${region.evacuation.by ? " by " + region.evacuation.by : ""})` : "not evacuating";
    rows($("breakers"), Object.entries(prot.breakers || {}), ([k, v]) => [cell(k), cell(v, stateClass(v))]);
    rows($("counters"), Object.entries(prot.counters || {}), ([k, v]) => [cell(k), cell(typeof v === "object" ? JSON.stringify(v) : String(v))]);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("updated").className = "meta";
  } catch (err) {
    $("updated").textContent = `refresh failed: ${err.message}`;
    $("updated").className = "meta bad";
  }
}

refresh();
setInterval(refresh, EVERY);
