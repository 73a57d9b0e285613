// The JS client in real Chromium against real Herald processes: resume
// across kill -9 (both transports), a reset surfaced to the app, a page
// reload resuming from sessionStorage.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startRedis, startHerald, requireTool, chromiumPath, waitFor, http } from "./harness.mjs";
import { openClientPage, startSubscription, Ledger, statuses } from "./common.mjs";

const fastRetry = { HERALD_STREAM__RETRY_MIN: "200ms", HERALD_STREAM__RETRY_MAX: "400ms", HERALD_STREAM__HEARTBEAT: "1s" };

for (const transport of ["fetch", "eventsource", "websocket"]) {
  test(`resume across kill -9 of the serving node (${transport})`, async (t) => {
    if (!requireTool(t, chromiumPath, "chromium")) return;
    const redis = await startRedis(t, { appendOnly: true });
    const { page, pageURL, reports } = await openClientPage(t);
    const env = { ...fastRetry, HERALD_CORS__ALLOWED_ORIGINS: pageURL };
    const common = ["--redis", redis.url, "--gossip-listen", "127.0.0.1:0"];
    const n1 = await startHerald(t, "n1", common, env);
    const n2 = await startHerald(t, "n2", [...common, "--join", n1.gossip], env);
    const led = new Ledger();
    await startSubscription(page, ["k.one", "k.two"], {
      urls: [n1.url, n2.url], transport, eventTypes: ["note"], backoff: { initial: 200, max: 1000 },
    });
    await waitFor("open on n1", () => statuses(reports).some((s) => s.state === "open" && s.url === n1.url));
    for (let i = 0; i < 10; i++) await led.publish(n2.url, i % 2 ? "k.two" : "k.one", `before-${i}\nline two`);
    await led.waitAll(reports, "events before the kill");

    await n1.kill9();
    for (let i = 0; i < 10; i++) await led.publish(n2.url, i % 2 ? "k.two" : "k.one", `down-${i}`);
    await waitFor("open on n2", () => statuses(reports).some((s) => s.state === "open" && s.url === n2.url));
    for (let i = 0; i < 5; i++) await led.publish(n2.url, i % 2 ? "k.two" : "k.one", `after-${i}`);
    await led.waitAll(reports, "every event after the kill");
    const r = led.check(reports);
    assert.equal(r.received, 25);
    assert.equal(reports.filter((x) => x.kind === "reset").length, 0, "no reset: nothing was lost");
    const multi = reports.find((x) => x.data === "before-0\nline two");
    assert.ok(multi, "multi-line data arrives byte-exact");
    t.diagnostic(`${transport}: received ${r.received}, duplicates ${r.dups}, lost ${r.lost}; connects ${statuses(reports).filter((s) => s.state === "open").length}`);
  });
}

test("a reset is surfaced to the app (cursor older than retention)", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const { page, pageURL, reports } = await openClientPage(t);
  const n = await startHerald(t, "r1", [], { ...fastRetry, HERALD_CORS__ALLOWED_ORIGINS: pageURL, HERALD_RETENTION__DEFAULT__MAX_LEN: "3" });
  const led = new Ledger();
  await startSubscription(page, ["trim.me"], { urls: [n.url], transport: "fetch" });
  await waitFor("open", () => statuses(reports).some((s) => s.state === "open"));
  await led.publish(n.url, "trim.me", "first");
  await led.waitAll(reports, "first event");
  const cursor = await page.evaluate(() => window.sub.cursor);
  await page.evaluate(() => window.sub.close());
  const gone = [];
  for (let i = 0; i < 10; i++) gone.push((await http("POST", `${n.url}/v1/topics/trim.me/events`, { event: "note", data: `while-away-${i}` })).body.offset);
  await startSubscription(page, ["trim.me"], { urls: [n.url], transport: "fetch", cursor });
  const reset = await waitFor("reset", () => reports.find((r) => r.kind === "reset"));
  assert.equal(reset.streams.length, 1);
  const s = reset.streams[0];
  assert.equal(s.topic, "trim.me");
  assert.equal(s.reason, "trimmed");
  assert.equal(s.lost_from, 2, "lost range starts after the cursor");
  assert.ok(s.lost_to >= 2 && s.lost_to < gone.at(-1), `lost_to ${s.lost_to}`);
  // Only the trimmed events are lost: the retained ones follow from
  // continue_from, then live events; nothing is skipped unnamed.
  assert.equal(s.continue_from, s.lost_to + 1);
  const retained = gone.filter((o) => o >= s.continue_from);
  assert.ok(retained.length > 0, "retention keeps the newest events");
  await waitFor("retained events", () => retained.every((o) => reports.some((r) => r.kind === "event" && r.topic === "trim.me" && r.offset === o)));
  await led.publish(n.url, "trim.me", "live-after-reset");
  await led.waitAll(reports, "live event after the reset");
  const after = reports.filter((r) => r.kind === "event" && r.topic === "trim.me" && r.offset > 1).map((r) => r.offset);
  assert.deepEqual(after, [...retained, gone.at(-1) + 1], "retained events in order, then the live one; none named lost delivered");
  led.check(reports);
  t.diagnostic(`reset surfaced: ${JSON.stringify(s)}`);
});

test("a page reload resumes from sessionStorage", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const { page, pageURL, reports } = await openClientPage(t);
  const n = await startHerald(t, "p1", [], { ...fastRetry, HERALD_CORS__ALLOWED_ORIGINS: pageURL });
  const led = new Ledger();
  const opts = { urls: [n.url], persist: true, transport: "fetch" };
  await startSubscription(page, ["reload.a", "reload.b"], opts);
  await waitFor("open", () => statuses(reports).some((s) => s.state === "open"));
  for (let i = 0; i < 6; i++) await led.publish(n.url, i % 2 ? "reload.b" : "reload.a", `pre-${i}`);
  await led.waitAll(reports, "events before reload");
  await page.reload();
  await page.waitForFunction(() => window.heraldReady === true);
  for (let i = 0; i < 6; i++) await led.publish(n.url, i % 2 ? "reload.b" : "reload.a", `during-${i}`);
  await startSubscription(page, ["reload.b", "reload.a"], opts); // same topics, any order
  await waitFor("reopened (resumed)", () => statuses(reports).filter((s) => s.state === "open").length >= 2);
  await led.publish(n.url, "reload.a", "post");
  await led.waitAll(reports, "events after reload");
  const r = led.check(reports);
  assert.equal(r.received, 13);
  t.diagnostic(`reload: received ${r.received}, duplicates ${r.dups}, lost ${r.lost}`);
});

test("a cursor no node accepts is reported and dropped, not retried forever", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const { page, pageURL, reports } = await openClientPage(t);
  const n = await startHerald(t, "c1", [], { ...fastRetry, HERALD_CORS__ALLOWED_ORIGINS: pageURL });
  await page.evaluate((url) => {
    window.errors = [];
    window.herald.subscribe(["bad.cursor"], {
      urls: [url], transport: "fetch", cursor: "not-a-cursor!", backoff: { initial: 100, max: 200 },
      onError: (e) => window.errors.push({ status: e.status, code: e.code }),
      onStatus: (s) => window.report({ kind: "status", state: s.state, url: s.url }),
      onEvent: (e) => window.report({ kind: "event", ...e }),
    });
  }, n.url);
  await waitFor("open after the refusal", () => statuses(reports).some((s) => s.state === "open"));
  assert.deepEqual(await page.evaluate(() => window.errors), [{ status: 400, code: "invalid_cursor" }]);
  const led = new Ledger();
  await led.publish(n.url, "bad.cursor", "fresh");
  await led.waitAll(reports, "live event on the fresh stream");
  led.check(reports);
});

test("a silent (half-open) connection is noticed by its missing heartbeats and resumed", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const { page, pageURL, reports } = await openClientPage(t);
  const n = await startHerald(t, "h1", [], { ...fastRetry, HERALD_STREAM__HEARTBEAT: "1s", HERALD_CORS__ALLOWED_ORIGINS: pageURL });
  // A loopback TCP proxy whose existing connections can be frozen: bytes
  // stop in both directions and nothing is closed, as in a partition.
  const up = new URL(n.url);
  const frozen = new Set();
  const live = new Set();
  const proxy = net.createServer((c) => {
    const s = net.connect(Number(up.port), up.hostname);
    const pair = { c, s };
    live.add(pair);
    const pipe = (from, to) => from.on("data", (d) => { if (!frozen.has(pair)) to.write(d); });
    pipe(c, s);
    pipe(s, c);
    const end = () => { c.destroy(); s.destroy(); live.delete(pair); };
    c.on("close", end).on("error", end);
    s.on("close", end).on("error", end);
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  t.after(() => { for (const p of live) { p.c.destroy(); p.s.destroy(); } return new Promise((r) => proxy.close(r)); });
  const via = `http://127.0.0.1:${proxy.address().port}`;
  const led = new Ledger();
  await startSubscription(page, ["half.open"], { urls: [via], transport: "fetch", idleTimeout: 2500 });
  await waitFor("open", () => statuses(reports).some((s) => s.state === "open"));
  await led.publish(n.url, "half.open", "before");
  await led.waitAll(reports, "before the freeze");
  for (const p of live) frozen.add(p);
  for (let i = 0; i < 5; i++) await led.publish(n.url, "half.open", `frozen-${i}`);
  await waitFor("reconnect after the idle timeout", () => statuses(reports).some((s) => s.state === "reconnecting" && s.reason === "idle"), 10000);
  await led.publish(n.url, "half.open", "after");
  await led.waitAll(reports, "every event after the freeze");
  const r = led.check(reports);
  t.diagnostic(`half-open: ${r.received} events, 0 lost/0 dup; the frozen connection was dropped after 2.5 s without heartbeats`);
});
