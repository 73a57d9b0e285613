// Herald cursor decoding (ADR 0025): which stream an event's id advanced.
//
// Every Herald event id is the connection's cursor after that event: for
// each origin region and each topic of the stream, the last offset
// delivered (layout in push/cursor.go, ADR 0001). Consecutive ids differ in
// exactly one slot, the event's own stream, so a client that knows the
// stream's sorted topics and its origins in cursor order (both in the
// herald.hello event) learns each event's topic, origin and offset from the
// id alone. The event's data stays byte-exact.
//
// This module has no dependencies and works with a plain EventSource:
//
//	const loc = new StreamLocator();
//	es.addEventListener("herald.hello", (e) => loc.hello(JSON.parse(e.data), e.lastEventId));
//	es.addEventListener("herald.reset", (e) => loc.seen(e.lastEventId));
//	es.onmessage = (e) => { const at = loc.advance(e.lastEventId); /* at.topic, at.origin, at.offset */ };

const VERSION_HEADER = { 1: 8, 2: 16, 3: 20 };
const MAX_CURSOR_LEN = 512;
const MAX_ORIGINS = 16;

/**
 * Decodes base64url without padding into bytes; null when invalid.
 * @param {string} s
 * @returns {Uint8Array|null}
 */
function b64url(s) {
  if (s.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let acc = 0, bits = 0, n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let v;
    if (c >= 65 && c <= 90) v = c - 65;
    else if (c >= 97 && c <= 122) v = c - 71;
    else if (c >= 48 && c <= 57) v = c + 4;
    else if (c === 45) v = 62;
    else if (c === 95) v = 63;
    else return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, n);
}

/**
 * @typedef {object} DecodedCursor
 * @property {number} version
 * @property {string} session 16 hex digits, "" for version 1 cursors
 * @property {{tag: number, offsets: number[]}[]} origins in cursor order
 */

/**
 * Decodes a cursor's offsets for a stream of `topics` topics. Returns null
 * for anything that is not a well-formed cursor of that shape.
 * @param {string} id
 * @param {number} topics
 * @returns {DecodedCursor|null}
 */
export function decodeCursor(id, topics) {
  if (typeof id !== "string" || id.length === 0 || id.length > MAX_CURSOR_LEN || !(topics > 0)) return null;
  const b = b64url(id);
  if (!b || b.length === 0) return null;
  const hdr = VERSION_HEADER[b[0]];
  if (!hdr || b.length < hdr) return null;
  let session = "";
  if (b[0] >= 2) {
    for (let i = 7; i < 15; i++) session += b[i].toString(16).padStart(2, "0");
  }
  const n = b[hdr - 1];
  if (n === 0 || n > MAX_ORIGINS) return null;
  let p = hdr;
  const origins = [];
  for (let o = 0; o < n; o++) {
    if (p + 2 > b.length) return null;
    const tag = (b[p] << 8) | b[p + 1];
    p += 2;
    const offsets = [];
    for (let t = 0; t < topics; t++) {
      let off = 0, mul = 1, k = 0;
      for (;;) {
        if (p >= b.length || k >= 10) return null;
        const c = b[p++];
        off += (c & 0x7f) * mul;
        mul *= 128;
        k++;
        if (c < 0x80) break;
      }
      if (off > 0) {
        if (p >= b.length) return null;
        p++; // epoch tag
      }
      offsets.push(off);
    }
    origins.push({ tag, offsets });
  }
  if (p !== b.length) return null;
  return { version: b[0], session, origins };
}

/**
 * originTag is the 16-bit tag a cursor carries for a region name
 * (FNV-1a 32 of the name, halves XORed).
 * @param {string} name
 * @returns {number}
 */
export function originTag(name) {
  let h = 0x811c9dc5;
  const bytes = new TextEncoder().encode(name);
  for (const c of bytes) {
    h ^= c;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return ((h >>> 16) ^ (h & 0xffff)) & 0xffff;
}

/**
 * @typedef {object} StreamPosition
 * @property {string} topic
 * @property {string} origin region name ("" when the hello did not name it)
 * @property {number} offset the event's offset in its stream
 */

/**
 * StreamLocator follows one stream's ids and tells, for each event, which
 * (topic, origin) stream it advanced and to which offset. Feed it every id
 * the stream delivers: hello and reset ids through seen/hello, event ids
 * through advance.
 */
export class StreamLocator {
  constructor() {
    /** @type {string[]} */ this.topics = [];
    /** @type {Map<number,string>} */ this.names = new Map();
    /** @type {DecodedCursor|null} */ this.last = null;
  }

  /**
   * hello takes a herald.hello's data (topics, origins) and its id.
   * @param {{topics?: string[], origins?: string[], origin?: string}} data
   * @param {string} [id]
   */
  hello(data, id) {
    this.topics = Array.isArray(data.topics) ? [...data.topics].sort() : [];
    for (const o of data.origins || []) this.names.set(originTag(o), o);
    if (data.origin) this.names.set(originTag(data.origin), data.origin);
    if (id) this.seen(id);
  }

  /**
   * seen records an id that carries no event of its own (hello, reset).
   * @param {string} id
   */
  seen(id) {
    const d = decodeCursor(id, this.topics.length);
    if (d) this.last = d;
  }

  /**
   * advance returns the stream the event with this id advanced, or null
   * when the id does not decode or no slot moved forward.
   * @param {string} id
   * @returns {StreamPosition|null}
   */
  advance(id) {
    const d = decodeCursor(id, this.topics.length);
    if (!d) return null;
    const prev = this.last;
    this.last = d;
    for (const o of d.origins) {
      const po = prev && prev.origins.find((x) => x.tag === o.tag);
      for (let t = 0; t < o.offsets.length; t++) {
        const before = po ? po.offsets[t] : 0;
        if (o.offsets[t] !== before && o.offsets[t] > 0) {
          return { topic: this.topics[t], origin: this.names.get(o.tag) || "", offset: o.offsets[t] };
        }
      }
    }
    return null;
  }
}
