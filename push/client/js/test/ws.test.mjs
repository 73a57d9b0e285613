// The WebSocket transport's own cases: "auto" prefers it; behind a proxy
// that refuses WebSocket upgrades the client falls back to fetch streaming
// and still resumes everything.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startHerald, requireTool, chromiumPath, waitFor } from "./harness.mjs";
import { openClientPage, startSubscription, Ledger, statuses } from "./common.mjs";

/** A loopback proxy that answers every WebSocket upgrade with 403 and pipes the rest. */
async function noUpgradeProxy(t, target) {
  const up = new URL(target);
  const socks = new Set();
  const proxy = net.createServer((c) => {
    socks.add(c);
    c.once("data", (first) => {
      if (/^upgrade:\s*websocket/im.test(first.toString("latin1"))) {
        c.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
      const s = net.connect(Number(up.port), up.hostname, () => s.write(first));
      socks.add(s);
      c.pipe(s).pipe(c);
      const end = () => { c.destroy(); s.destroy(); };
      c.on("error", end).on("close", end);
      s.on("error", end).on("close", end);
    });
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  t.after(() => { for (const s of socks) s.destroy(); return new Promise((r) => proxy.close(r)); });
  return `http://127.0.0.1:${proxy.address().port}`;
}

test("auto prefers WebSocket, and falls back to fetch streaming behind a proxy that refuses upgrades", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const { page, pageURL, reports } = await openClientPage(t);
  const n = await startHerald(t, "w1", [], { HERALD_CORS__ALLOWED_ORIGINS: pageURL, HERALD_STREAM__RETRY_MIN: "200ms", HERALD_STREAM__RETRY_MAX: "400ms" });
  const led = new Ledger();
  await startSubscription(page, ["ws.direct"], { urls: [n.url] });
  await waitFor("open", () => statuses(reports).some((s) => s.state === "open"));
  assert.equal(statuses(reports).find((s) => s.state === "open").transport, "websocket");
  await led.publish(n.url, "ws.direct", "direct\nover websocket");
  await led.waitAll(reports, "direct event");

  const via = await noUpgradeProxy(t, n.url);
  const before = reports.length;
  await startSubscription(page, ["ws.proxied"], { urls: [via], backoff: { initial: 100, max: 200 } });
  await waitFor("open through the proxy", () => statuses(reports.slice(before)).some((s) => s.state === "open"), 15000);
  const opened = statuses(reports.slice(before)).find((s) => s.state === "open");
  assert.equal(opened.transport, "fetch");
  await led.publish(n.url, "ws.proxied", "through the proxy");
  await led.waitAll(reports, "proxied event");
  led.check(reports);
  const tried = statuses(reports.slice(before)).filter((s) => s.state === "connecting").map((s) => s.transport);
  t.diagnostic(`behind a proxy refusing upgrades: tried ${tried.join(", ")}, opened with ${opened.transport}`);
});
