// Two regions (each its own Redis primary plus a replica of the other's):
// the client follows herald.moved out of an evacuated region, publish()
// follows the evacuation answer's alternates under the same idempotency
// key, and the client fails back home once home is healthy again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { requireTool, chromiumPath, waitFor, http } from "./harness.mjs";
import { startRegions } from "./regions.mjs";
import { openClientPage, startSubscription, Ledger, statuses } from "./common.mjs";

test("evacuation: herald.moved followed, publish follows alternates, fail back home; region loss: hello's alternates followed", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const { page, pageURL, reports } = await openClientPage(t);
  const { a1, b1 } = await startRegions(t, { HERALD_CORS__ALLOWED_ORIGINS: pageURL });
  const led = new Ledger();
  const topics = ["ev.x", "ev.y"];
  await startSubscription(page, topics, { urls: [a1.url], transport: "fetch", failbackInterval: 500 });
  await waitFor("open in a", () => statuses(reports).some((s) => s.state === "open" && s.url === a1.url));
  for (let i = 0; i < 6; i++) {
    await led.publish(a1.url, topics[i % 2], `a-before-${i}`);
    await led.publish(b1.url, topics[i % 2], `b-before-${i}`);
  }
  try { await led.waitAll(reports, "events from both origins", 8000); } catch (e) { t.diagnostic(JSON.stringify((await http("GET", a1.admin + "/v1/region")).body)); t.diagnostic(a1.tail(40)); throw e; }

  const ev = await http("POST", a1.admin + "/v1/region/evacuate", { active: true, by: "js-test" });
  assert.equal(ev.status, 202);
  const moved = await waitFor("herald.moved", () => reports.find((r) => r.kind === "moved"), 30000);
  assert.ok(moved.alternates.includes(b1.url), `moved alternates ${moved.alternates} name b`);
  await waitFor("open in b", () => statuses(reports).some((s) => s.state === "open" && s.url === b1.url), 20000);

  // A new subscription aimed at the evacuated region gets its 503
  // evacuating answer (JSON, alternates) and opens in b.
  await page.evaluate((a) => {
    window.second = [];
    window.sub2 = window.herald.subscribe(["ev.x"], { urls: [a], transport: "fetch", onStatus: (s) => window.second.push({ state: s.state, url: s.url, error: s.error ? s.error.code : "" }) });
  }, a1.url);
  await page.waitForFunction((b) => window.second.some((s) => s.state === "open" && s.url === b), b1.url, { timeout: 20000 });
  const second = await page.evaluate(() => window.second);
  assert.ok(second.some((s) => s.state === "reconnecting" && s.error === "evacuating"), JSON.stringify(second));
  await page.evaluate(() => window.sub2.close());

  // publish() to the evacuated region: 503 evacuating with alternates,
  // retried in b under the same idempotency key.
  const pub = await page.evaluate(async (a) => {
    const out = [];
    for (let i = 0; i < 4; i++) out.push(await window.herald.publish(i % 2 ? "ev.y" : "ev.x", "note", `sdk-${i}`, { urls: [a], idempotencyKey: `sdk-key-${i}` }));
    return out;
  }, a1.url);
  pub.forEach((r, i) => {
    assert.equal(r.origin, "b", "published in b");
    led.sent.set(`sdk-${i}`, { topic: r.topic, origin: r.origin, offset: r.offset });
  });
  for (let i = 0; i < 4; i++) await led.publish(b1.url, topics[i % 2], `b-during-${i}`);
  await led.waitAll(reports, "events after the move");

  // Call the evacuation off: the client goes home by itself.
  const off = await http("POST", a1.admin + "/v1/region/evacuate", { active: false, by: "js-test" });
  assert.ok(off.status === 202 || off.status === 200, `call off: ${off.status}`);
  await waitFor("failback to a", () => statuses(reports).filter((s) => s.state === "open" && s.url === a1.url).length >= 2, 30000);
  for (let i = 0; i < 4; i++) {
    await led.publish(a1.url, topics[i % 2], `a-after-${i}`);
    await led.publish(b1.url, topics[i % 2], `b-after-${i}`);
  }
  await led.waitAll(reports, "events after failback");

  // Region a lost (kill -9 of its node): the client was given only a's URL
  // and goes to b, the alternate herald.hello named.
  await a1.kill9();
  await waitFor("open in b after a's loss", () => statuses(reports).filter((s) => s.state === "open" && s.url === b1.url).length >= 2, 30000);
  for (let i = 0; i < 4; i++) await led.publish(b1.url, topics[i % 2], `b-after-loss-${i}`);
  await led.waitAll(reports, "events after region a's loss");
  const r = led.check(reports);
  assert.equal(reports.filter((x) => x.kind === "reset").length, 0, "no reset");
  const reasons = statuses(reports).filter((s) => s.state === "reconnecting").map((s) => s.reason);
  assert.ok(reasons.includes("moved") && reasons.includes("failback"), `reasons ${reasons}`);
  t.diagnostic(`evacuation: ${r.received} events from a and b, 0 lost/0 dup; reconnects ${JSON.stringify(reasons)}`);
});
