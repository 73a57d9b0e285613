// The embedded pages in real Chromium, served by real nodes: content
// appears, no console errors, readable on a phone-sized viewport, a
// screenshot of each kept under artifactsDir.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startHerald, requireTool, chromiumPath, waitFor, http, launchBrowser, screenshot, freePort, publishOK } from "./harness.mjs";
import { startRegions } from "./regions.mjs";

const phone = { width: 390, height: 844 };

async function noHorizontalScroll(page, what) {
  const { sw, iw } = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, iw: innerWidth }));
  assert.ok(sw <= iw + 1, `${what}: page is ${sw}px wide in a ${iw}px viewport`);
}

function noErrors(ctx, what) {
  assert.deepEqual(ctx.errors, [], `${what}: console errors`);
}

test("demo page: live events with every line, publish form, reconnect and reset lines", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const n = await startHerald(t, "demo1", [], { HERALD_RETENTION__DEFAULT__MAX_LEN: "3", HERALD_STREAM__RETRY_MIN: "200ms", HERALD_STREAM__RETRY_MAX: "400ms" });
  const ctx = await launchBrowser(t, phone);
  const page = await ctx.newPage();
  await page.goto(n.url + "/?topic=demo.a&topic=demo.b");
  await page.waitForSelector("li.note.reconnect");
  await publishOK(n.url, "demo.a", "greeting", "first line\nsecond line\n\nfourth line");
  const first = page.locator("li.event").first();
  await first.waitFor();
  assert.equal(await first.locator(".topic").textContent(), "demo.a");
  assert.equal(await first.locator(".type").textContent(), "greeting");
  assert.equal(await first.locator("pre.data").textContent(), "first line\nsecond line\n\nfourth line");
  assert.match(await first.locator(".time").textContent(), /\d/);

  // The publish form.
  await page.fill("#pub-topic", "demo.b");
  await page.fill("#pub-type", "note");
  await page.fill("#pub-data", "from the form\nline 2");
  await page.click("#publish-form button");
  await page.waitForFunction(() => document.querySelector("#pub-result").textContent.startsWith("stored"));
  await waitFor("form event listed", async () => (await page.locator("li.event").count()) === 2);
  const top = page.locator("li.event").first();
  assert.equal(await top.locator(".topic").textContent(), "demo.b");
  assert.equal(await top.locator("pre.data").textContent(), "from the form\nline 2");
  await noHorizontalScroll(page, "demo");
  await screenshot(page, "demo-phone");

  // Away while 10 events are published; retention keeps 3: the page
  // resumes from its stored cursor and shows the reset as a line.
  await page.goto("about:blank");
  for (let i = 0; i < 10; i++) await publishOK(n.url, "demo.a", "note", `away-${i}`);
  await page.goto(n.url + "/?topic=demo.a&topic=demo.b");
  const reset = page.locator("li.note.reset").first();
  await reset.waitFor();
  assert.match(await reset.textContent(), /reset demo\.a@local: trimmed, lost 2–/);
  assert.match(await page.locator("li.note.reconnect").first().textContent(), /resumed/);
  await screenshot(page, "demo-reset-phone");
  noErrors(ctx, "demo");
});

test("log tail: log types as topics, level and text filters, pause/follow, resume after reload", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const n = await startHerald(t, "logs1", [], {});
  const ctx = await launchBrowser(t, phone);
  const page = await ctx.newPage();
  await page.goto(n.url + "/logs?topic=logs.api.error&topic=logs.api.info&topic=logs.web.warn");
  await page.waitForFunction(() => document.querySelector("#conn").textContent.startsWith("tailing"));
  const line = (app, level, msg, extra = {}) => publishOK(n.url, `logs.${app}.${level}`, "log", JSON.stringify({ time: new Date().toISOString(), level, msg, app, ...extra }));
  await line("api", "error", "db timeout", { req: "r1", ms: 5003 });
  await line("api", "info", "request served", { req: "r2" });
  await line("web", "warn", "slow render", { page: "/home" });
  await publishOK(n.url, "logs.other.error", "log", JSON.stringify({ level: "error", msg: "not subscribed" }));
  await waitFor("3 lines", async () => (await page.locator("#lines li").count()) === 3);
  const texts = await page.locator("#lines li").allTextContents();
  assert.match(texts[0], /ERROR.*db timeout.*req=r1 ms=5003.*\[logs\.api\.error\]/);
  assert.ok(!texts.join("").includes("not subscribed"), "only the subscribed log types");

  // Level filter, then text filter.
  await page.uncheck("input.lvl[value=info]");
  assert.equal(await page.locator("#lines li").count(), 2);
  await page.check("input.lvl[value=info]");
  await page.fill("#filter", "render");
  assert.deepEqual((await page.locator("#lines li .msg").allTextContents()).map((s) => s.split(" ")[0]), ["slow"]);
  await page.fill("#filter", "");

  // Pause: new lines wait; follow shows them.
  await page.click("#follow");
  await line("api", "error", "while paused");
  await page.waitForFunction(() => document.querySelector("#state").textContent.includes("1 new while paused"));
  assert.equal(await page.locator("#lines li").count(), 3);
  await page.click("#follow");
  await waitFor("paused line shown", async () => (await page.locator("#lines li").count()) === 4);
  await noHorizontalScroll(page, "logs");
  await screenshot(page, "logs-phone");

  // Reload: lines kept, the stream resumes where it was (nothing lost or repeated).
  await page.reload();
  await line("api", "info", "during reload");
  await waitFor("5 lines after reload", async () => (await page.locator("#lines li").count()) === 5);
  await line("web", "warn", "after reload");
  await waitFor("6 lines", async () => (await page.locator("#lines li").count()) === 6);
  const msgs = (await page.locator("#lines li .msg").allTextContents()).map((s) => s.replace(/ \S+=.*$| \[.*$/, ""));
  assert.deepEqual(msgs, ["db timeout", "request served", "slow render", "while paused", "during reload", "after reload"]);
  noErrors(ctx, "logs");
});

test("status page and demo moves across regions", async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const port = await freePort();
  const aOrigin = `http://127.0.0.1:${port}`;
  const { a1, b1 } = await startRegions(t, { HERALD_CORS__ALLOWED_ORIGINS: aOrigin }, { aListen: `127.0.0.1:${port}` });
  const ctx = await launchBrowser(t, phone);
  const status = await ctx.newPage();
  await status.goto(a1.admin + "/?every=300");
  await status.waitForFunction(() => document.querySelector("#node").textContent === "a1");
  await waitFor("regions a and b with lag and link", async () => {
    const rows = await status.locator("#regions tr").allTextContents();
    return rows.length === 2 && rows.some((r) => r.startsWith("a (here)")) && rows.some((r) => /^b.*(ms|s).*up/.test(r));
  });
  assert.match(await status.locator("#where").textContent(), /region a · version \S+/);
  assert.match(await status.locator("#members").textContent(), /a1 \(this node\)aalive/);
  assert.match(await status.locator("#breakers").textContent(), /redis:a\s*closed/);
  assert.match(await status.locator("#evac").textContent(), /not evacuating/);
  await noHorizontalScroll(status, "status");
  await screenshot(status, "status-phone");

  const demo = await ctx.newPage();
  await demo.goto(a1.url + "/?topic=move.me");
  await demo.waitForSelector("li.note.reconnect");
  const ev = await http("POST", a1.admin + "/v1/region/evacuate", { active: true, by: "pages-test" });
  assert.equal(ev.status, 202);
  const moved = demo.locator("li.note.moved").first();
  await moved.waitFor({ timeout: 30000 });
  assert.match(await moved.textContent(), new RegExp(`moved \\(evacuation\\) to .*${b1.url.replace(/[.]/g, "\\.")}`));
  await waitFor("demo connected in b", async () => (await demo.locator("#conn").textContent()).includes("(b)"), 20000);
  await publishOK(b1.url, "move.me", "note", "in b");
  await demo.locator("li.event pre.data", { hasText: "in b" }).waitFor();
  await screenshot(demo, "demo-moved-phone");
  // The status page refreshes by itself: it now shows the evacuation.
  await status.waitForFunction(() => document.querySelector("#evac").textContent.startsWith("evacuating"));
  await screenshot(status, "status-evacuating-phone");
  await status.setViewportSize({ width: 1280, height: 900 });
  await screenshot(status, "status-desktop");
  noErrors(ctx, "status and demo");
});
