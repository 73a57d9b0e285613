// Unit tests of the pieces that need no server: the cursor decoder against
// the fixtures Go's codec writes (push/cursor_vectors_test.go), the
// event-stream parser, backoff and token expiry.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { decodeCursor, originTag, StreamLocator } from "../src/cursor.js";
import { SSEParser } from "../src/sse.js";
import { backoffDelay, tokenExpiry, HeraldError } from "../src/herald.js";

const vectors = JSON.parse(readFileSync(new URL("./testdata/cursors.json", import.meta.url), "utf8"));

test("decodeCursor reads every offset Go encoded", () => {
  assert.ok(vectors.length >= 5);
  for (const v of vectors) {
    const d = decodeCursor(v.id, v.topics.length);
    assert.ok(d, `decode ${v.id}`);
    assert.equal(d.session, v.session);
    assert.deepEqual(d.origins.map((o) => o.offsets), v.offsets);
    assert.deepEqual(d.origins.map((o) => o.tag), v.origins.map(originTag), "origin tags in cursor order");
  }
});

test("decodeCursor rejects what is not a cursor of that shape", () => {
  const v = vectors[3];
  for (const bad of ["", "!!!", v.id + "A", v.id.slice(0, -2), "x".repeat(600)]) {
    assert.equal(decodeCursor(bad, v.topics.length), null, bad);
  }
  assert.equal(decodeCursor(v.id, v.topics.length + 1), null, "wrong topic count");
});

test("StreamLocator names the stream each id advanced", () => {
  // Build a sequence from the 4x3 vector: same shape, one slot at a time.
  const v = vectors[4];
  const loc = new StreamLocator();
  loc.hello({ topics: [...v.topics].reverse(), origins: v.origins }, vectors[4].id);
  assert.equal(loc.advance(v.id), null, "an id equal to the last one advanced nothing");
  const v3 = vectors[3];
  const l3 = new StreamLocator();
  l3.hello({ topics: v3.topics, origins: v3.origins });
  const at = l3.advance(v3.id);
  // First non-zero slot in cursor order.
  assert.deepEqual(at, { topic: v3.topics[0], origin: v3.origins[0], offset: v3.offsets[0][0] });
});

function parse(chunks, opts) {
  const out = [];
  const retries = [];
  const p = new SSEParser((e) => out.push(e), { ...opts, onRetry: (ms) => retries.push(ms) });
  for (const c of chunks) p.push(c);
  return { out, retries, p };
}

test("SSEParser follows the event-stream rules", () => {
  const { out, retries, p } = parse(["\ufeffretry: 1500\n", "id: c1\nevent: x\ndata: a\r", "\ndata:  b\rdata\n\n", ": comment\n\nid: c2\n\n", "data: tail\n\n"]);
  assert.deepEqual(retries, [1500]);
  assert.deepEqual(out, [
    { type: "x", data: "a\n b\n", id: "c1" },
    { type: "message", data: "tail", id: "c2" },
  ]);
  assert.equal(p.lastEventId, "c2");
  const split = parse(["data: one\r", "\n", "\r\n"]);
  assert.deepEqual(split.out.map((e) => e.data), ["one"]);
  const noTerm = parse(["id: z\ndata: half"]);
  assert.equal(noTerm.out.length, 0);
  assert.equal(noTerm.p.lastEventId, "");
  assert.deepEqual(parse(["retry: 1x\n\n"]).retries, []);
});

test("backoffDelay is jittered, capped and honours the floor", () => {
  assert.equal(backoffDelay(1, { initial: 1000, max: 8000 }, 0, () => 0), 500);
  assert.equal(backoffDelay(1, { initial: 1000, max: 8000 }, 0, () => 1), 1000);
  assert.equal(backoffDelay(10, { initial: 1000, max: 8000 }, 0, () => 1), 8000);
  assert.equal(backoffDelay(1, { initial: 1000, max: 8000 }, 3000, () => 0), 3000);
});

test("tokenExpiry reads a JWT's exp", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  assert.equal(tokenExpiry(`${b64({ alg: "HS256" })}.${b64({ exp: 1700000000 })}.sig`), 1700000000000);
  assert.equal(tokenExpiry("hk_apikey"), 0);
  assert.equal(new HeraldError(503, { code: "evacuating", alternates: ["http://b"] }).retryable, true);
  assert.equal(new HeraldError(403, { code: "forbidden" }).retryable, false);
});

// Seeded pseudo-random inputs (reproducible): the parsers never throw on
// garbage, and the event-stream parser's output does not depend on how the
// stream is split into chunks.
function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

test("decodeCursor never throws on random input, and mutated cursors decode or fail cleanly", () => {
  const r = rng(22);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/!\u00e9";
  for (let i = 0; i < 5000; i++) {
    const v = vectors[i % vectors.length];
    let s = i % 2 ? v.id : "";
    const n = Math.floor(r() * 8);
    for (let k = 0; k < n; k++) {
      const pos = Math.floor(r() * (s.length + 1));
      s = s.slice(0, pos) + alphabet[Math.floor(r() * alphabet.length)] + s.slice(pos + (r() < 0.5 ? 1 : 0));
    }
    const d = decodeCursor(s, 1 + Math.floor(r() * 4));
    assert.ok(d === null || (Array.isArray(d.origins) && d.origins.every((o) => o.offsets.every(Number.isFinite))));
  }
});

test("SSEParser output does not depend on chunking", () => {
  const r = rng(7);
  const pieces = ["data: a", "\n", "\r\n", "\r", "id: x", "event: t", ": c", "data:", " b", "retry: 5", "\ufeff", "é🚀", "id", "\n\n"];
  for (let i = 0; i < 300; i++) {
    let text = "";
    for (let k = 0; k < 40; k++) text += pieces[Math.floor(r() * pieces.length)];
    const whole = parse([text]);
    const chunks = [];
    for (let p = 0; p < text.length; ) {
      const n = 1 + Math.floor(r() * 6);
      chunks.push(text.slice(p, p + n));
      p += n;
    }
    const split = parse(chunks);
    assert.deepEqual(split.out, whole.out, JSON.stringify(text));
    assert.deepEqual(split.retries, whole.retries);
  }
});
