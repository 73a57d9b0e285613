// publish() against a real node, in Node (fetch): a retry after a lost
// answer reuses the idempotency key, so the event is stored once; a dead
// URL fails over to the next.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { startHerald, http, freePort } from "./harness.mjs";
import { publish } from "../src/herald.js";

test("a retry after a lost answer stores the event once (same idempotency key)", async (t) => {
  const n = await startHerald(t, "pub1", [], {});
  const keys = [];
  // A loopback proxy that forwards every publish to the node but loses the
  // first answer (the client sees a 503, as after a timeout at a balancer).
  const proxy = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    keys.push(req.headers["idempotency-key"]);
    const up = await fetch(n.url + req.url, { method: req.method, headers: { "Content-Type": "application/json", "Idempotency-Key": req.headers["idempotency-key"] }, body: Buffer.concat(chunks) });
    const body = await up.text();
    if (keys.length === 1) {
      res.writeHead(503, { "Content-Type": "application/json", "Retry-After": "1" });
      return res.end(JSON.stringify({ error: { code: "unavailable", message: "answer lost on the way back" } }));
    }
    res.writeHead(up.status, { "Content-Type": "application/json" });
    res.end(body);
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  t.after(() => new Promise((r) => proxy.close(r)));
  const start = Date.now();
  const r = await publish("pub.once", "note", "exactly once", { urls: [`http://127.0.0.1:${proxy.address().port}`], backoff: { initial: 50, max: 100 } });
  assert.equal(keys.length, 2, "one retry");
  assert.equal(keys[0], keys[1], "the retry reuses the key");
  assert.ok(Date.now() - start >= 1000, "Retry-After honoured");
  assert.equal(r.duplicate, true, "the node recognised the retry");
  assert.equal(r.offset, 1);
  const h = await http("GET", `${n.url}/v1/topics/pub.once/events?after=0`);
  assert.equal(h.body.events.length, 1, "stored once");
});

test("publish fails over from a dead URL and rejects a 4xx at once", async (t) => {
  const n = await startHerald(t, "pub2", [], {});
  const dead = `http://127.0.0.1:${await freePort()}`;
  const r = await publish("pub.failover", "", { n: 1 }, { urls: [dead, n.url], backoff: { initial: 20, max: 50 } });
  assert.equal(r.offset, 1);
  const h = await http("GET", `${n.url}/v1/topics/pub.failover/events?after=0`);
  assert.equal(h.body.events[0].data, '{"n":1}', "non-string data is sent as JSON");
  await assert.rejects(publish("bad topic!", "", "x", { urls: [n.url] }), (e) => e.name === "HeraldError" && e.status === 400 && e.code === "invalid_topic");
});
