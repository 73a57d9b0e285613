// Token refresh: a node with JWT authentication ends every stream when its
// token expires; the client asks its token callback before each connect and
// again before expiry, reconnects with the fresh token and loses nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startHerald, requireTool, chromiumPath, waitFor, mintJWT, writeTemp, http } from "./harness.mjs";
import { openClientPage, startSubscription, Ledger, statuses } from "./common.mjs";

for (const transport of ["fetch", "websocket"]) test(`token callback before each connect and before expiry; nothing lost across refreshes (${transport})`, async (t) => {
  if (!requireTool(t, chromiumPath, "chromium")) return;
  const secret = "js-client-test-secret-0123456789abcdef";
  const keyFile = writeTemp("hs256.key", secret);
  const cfg = writeTemp("herald.yaml", `auth:\n  audience: herald\n  keys:\n    - algorithm: HS256\n      file: ${keyFile}\n`);
  const ttl = 3; // seconds
  let issued = 0;
  const { page, pageURL, reports } = await openClientPage(t, {
    "/token": (req, res) => {
      issued++;
      const now = Math.floor(Date.now() / 1000);
      res.writeHead(200, { "Content-Type": "text/plain", "Cache-Control": "no-store" });
      res.end(mintJWT(secret, { sub: "alice", aud: "herald", iat: now, exp: now + ttl, herald: { sub: ["tok.*"] } }));
    },
  });
  const n = await startHerald(t, "auth1", ["--config", cfg], {
    HERALD_CORS__ALLOWED_ORIGINS: pageURL, HERALD_STREAM__RETRY_MIN: "200ms", HERALD_STREAM__RETRY_MAX: "400ms",
  }, { dev: false });
  const now = Math.floor(Date.now() / 1000);
  const pubToken = mintJWT(secret, { sub: "publisher", aud: "herald", iat: now, exp: now + 600, herald: { pub: ["tok.*"] } });
  const auth = { Authorization: "Bearer " + pubToken };
  // The control: without a token the stream is refused.
  const anon = await http("GET", `${n.url}/v1/stream?topic=tok.a`, undefined, { "Herald-Client": "test" });
  assert.equal(anon.status, 401);

  const led = new Ledger();
  await startSubscription(page, ["tok.a"], { urls: [n.url], tokenURL: pageURL + "/token", tokenRefreshMargin: 1000, transport });
  await waitFor("open", () => statuses(reports).some((s) => s.state === "open"));
  const until = Date.now() + 3.2 * ttl * 1000;
  let i = 0;
  while (Date.now() < until) {
    const r = await http("POST", `${n.url}/v1/topics/tok.a/events`, { event: "note", data: `tok-${i}` }, auth);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    led.sent.set(`tok-${i}`, { topic: "tok.a", origin: r.body.origin, offset: r.body.offset });
    i++;
    await new Promise((r) => setTimeout(r, 100));
  }
  await led.waitAll(reports, "every event across token refreshes");
  const res = led.check(reports);
  const refreshes = statuses(reports).filter((s) => s.state === "reconnecting" && s.reason === "token_refresh").length;
  const opens = statuses(reports).filter((s) => s.state === "open").length;
  assert.ok(refreshes >= 2, `refreshes before expiry: ${refreshes}`);
  assert.ok(issued >= 3, `tokens issued: ${issued}`);
  assert.ok(issued >= opens, `a token per connect: issued ${issued}, connects ${opens}`);
  t.diagnostic(`${transport}: token ttl ${ttl}s: ${res.received} events, 0 lost/0 dup; tokens issued ${issued}, refreshes ${refreshes}, connects ${opens}`);
});
