// Herald JS client: subscribe with resume and failover, publish with
// retries. ESM, no dependencies, runs as is in browsers and Node >= 20.
// Types: herald.d.ts. Guide: docs/js-client.md.

import { SSEParser } from "./sse.js";
import { StreamLocator } from "./cursor.js";

export { StreamLocator, decodeCursor, originTag } from "./cursor.js";
export { SSEParser } from "./sse.js";

/** Sent as the Herald-Client header: the server answers refusals with JSON
 * (503 + Retry-After, alternates, cursor) instead of a browser-safe 200. */
export const CLIENT_NAME = "herald-js/0.1";

const HELLO = "herald.hello";
const RESET = "herald.reset";
const MOVED = "herald.moved";

/** The transports in the order "auto" tries them (see docs/js-client.md). */
export const FALLBACK_ORDER = Object.freeze(["websocket", "fetch", "eventsource"]);

/** An HTTP error answered by Herald (JSON error body). */
export class HeraldError extends Error {
  /**
   * @param {number} status
   * @param {{code?: string, message?: string, alternates?: string[], cursor?: string}} [body]
   * @param {number} [retryAfter] seconds
   */
  constructor(status, body = {}, retryAfter = 0) {
    super(`herald: ${status} ${body.code || ""}: ${body.message || ""}`.trim());
    this.name = "HeraldError";
    this.status = status;
    this.code = body.code || "";
    this.alternates = body.alternates || [];
    this.cursor = body.cursor || "";
    this.retryAfter = retryAfter;
  }

  /** Whether the same request may succeed later (or elsewhere). */
  get retryable() {
    return this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

function trimSlash(u) {
  return String(u).replace(/\/+$/, "");
}

function asList(v) {
  if (!v) return [];
  return (Array.isArray(v) ? v : [v]).map(trimSlash);
}

/**
 * Jittered exponential backoff: attempt 1 waits about `initial`, doubling up
 * to `max`; the result is uniformly spread over [d/2, d] and never below
 * `floor` (the server's retry: or Retry-After).
 * @param {number} attempt
 * @param {{initial?: number, max?: number}} b
 * @param {number} floor
 * @param {() => number} random
 */
export function backoffDelay(attempt, b, floor = 0, random = Math.random) {
  const initial = b.initial ?? 500;
  const max = b.max ?? 30000;
  const d = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  const j = d / 2 + random() * (d / 2);
  return Math.max(floor, Math.round(j));
}

/**
 * Reads a JWT's `exp` (milliseconds since the epoch), or 0.
 * @param {string} token
 */
export function tokenExpiry(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return 0;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
    return typeof json.exp === "number" ? json.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

async function resolveToken(getToken) {
  if (!getToken) return { token: "", expiresAt: 0 };
  const t = await getToken();
  if (!t) return { token: "", expiresAt: 0 };
  if (typeof t === "string") return { token: t, expiresAt: tokenExpiry(t) };
  return { token: t.token, expiresAt: t.expiresAt ? +t.expiresAt : tokenExpiry(t.token) };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal && signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      if (signal) signal.removeEventListener("abort", done);
      resolve();
    }
    if (signal) signal.addEventListener("abort", done, { once: true });
  });
}

function retryAfterSeconds(res) {
  const v = res.headers.get("Retry-After");
  const n = v ? Number(v) : 0;
  return Number.isFinite(n) && n > 0 ? n : 0;
}

async function errorOf(res) {
  let body = {};
  try {
    const j = await res.json();
    body = (j && j.error) || {};
  } catch {
    /* not JSON */
  }
  return new HeraldError(res.status, body, retryAfterSeconds(res));
}

function randomKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

/**
 * Subscribes to topics and keeps the stream alive across node, region and
 * network failures, resuming from the cursor every time.
 * @param {string[]} topics
 * @param {import("./herald.js").SubscribeOptions} opts
 * @returns {Subscription}
 */
export function subscribe(topics, opts) {
  return new Subscription(topics, opts);
}

export class Subscription {
  /**
   * @param {string[]} topics
   * @param {import("./herald.js").SubscribeOptions} opts
   */
  constructor(topics, opts) {
    if (!Array.isArray(topics) || topics.length === 0) throw new TypeError("herald: subscribe needs at least one topic");
    this.topics = [...new Set(topics.map(String))];
    this.opts = opts;
    this.home = asList(opts && opts.urls);
    if (this.home.length === 0) throw new TypeError("herald: subscribe needs urls (the region or node base URLs)");
    for (const u of this.home) new URL(u); // throws on a bad URL
    /** learned from herald.hello, herald.moved and evacuation answers */
    this.alternates = [];
    this.current = this.home[0];
    this.storageKey = opts.persist ? (typeof opts.persist === "string" ? opts.persist : "herald:" + [...this.topics].sort().join(",")) : "";
    this.storage = opts.storage || (this.storageKey ? globalThis.sessionStorage : undefined);
    this.cursor = opts.cursor || this.load() || "";
    this.retryMs = 0; // the server's latest retry:
    this.state = "idle";
    this.transport = "";
    this.locator = new StreamLocator();
    this.closed = false;
    this.stop = new AbortController();
    this.conn = null; // AbortController of the live connection
    this.pending = null; // why the live connection is being ended by us
    this.done = this.run().catch((err) => {
      // No transport can run here: say so once, never as an unhandled rejection.
      this.closed = true;
      this.setStatus("failed", { error: err });
      if (this.opts.onError) this.opts.onError(err);
    });
  }

  /** Ends the subscription for good. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.stop.abort();
    if (this.conn) this.conn.abort();
    this.setStatus("closed", {});
  }

  /**
   * Ends the current connection and opens a new one (resuming).
   * @param {string} [reason]
   * @param {string} [url] where to connect next
   */
  reconnect(reason = "manual", url) {
    if (url) this.current = trimSlash(url);
    this.pending = { reason, now: true };
    if (this.conn) this.conn.abort();
  }

  load() {
    if (!this.storageKey || !this.storage) return "";
    try {
      return this.storage.getItem(this.storageKey) || "";
    } catch {
      return "";
    }
  }

  save() {
    if (!this.storageKey || !this.storage) return;
    try {
      this.storage.setItem(this.storageKey, this.cursor);
    } catch {
      /* storage full or denied: resume only within this page */
    }
  }

  setStatus(state, info) {
    this.state = state;
    if (this.opts.onStatus) this.opts.onStatus({ state, url: this.current, transport: this.transport, ...info });
  }

  candidates() {
    return [...new Set([...this.home, ...this.alternates])];
  }

  nextURL(after) {
    const c = this.candidates();
    const i = c.indexOf(after);
    return c[(i + 1) % c.length];
  }

  transports() {
    const t = this.opts.transport || "auto";
    if (Array.isArray(t)) return t;
    if (t !== "auto") return [t];
    const order = [];
    for (const k of FALLBACK_ORDER) {
      if (k === "fetch" && typeof (this.opts.fetch || globalThis.fetch) === "function" && typeof ReadableStream === "function") order.push(k);
      if (k === "eventsource" && (this.opts.EventSource || globalThis.EventSource) && !this.opts.getToken) order.push(k);
      if (k === "websocket" && (this.opts.WebSocket || globalThis.WebSocket)) order.push(k);
    }
    return order;
  }

  async run() {
    const order = this.transports();
    if (order.length === 0) throw new Error("herald: no transport available here");
    let ti = 0; // index in order
    let failures = 0; // consecutive connects that did not open
    let unsupported = 0;
    let transportFailures = 0; // connects of this transport that failed below HTTP
    while (!this.closed) {
      this.transport = order[ti];
      const url = this.current;
      const ctl = new AbortController();
      this.conn = ctl;
      this.pending = null;
      let end;
      try {
        const tok = await resolveToken(this.opts.getToken);
        if (this.closed) break;
        this.setStatus("connecting", { attempt: failures + 1 });
        end = await this.connect(this.transport, url, tok, ctl);
      } catch (err) {
        end = { opened: false, error: err };
      }
      this.conn = null;
      if (this.closed) break;
      let delay;
      let reason = (this.pending && this.pending.reason) || end.reason || (end.error ? "error" : "ended");
      if (end.unsupported && order.length > 1) {
        // This transport cannot run here: the next one in the fallback order.
        unsupported++;
        ti = (ti + 1) % order.length;
        if (unsupported >= order.length) throw new Error("herald: no transport works here");
        continue;
      }
      if (end.moved) {
        this.alternates = asList(end.moved.alternates);
        const next = this.alternates.find((u) => u !== url);
        if (next) this.current = next;
        failures = 0;
        delay = backoffDelay(1, { initial: 100, max: 1000 }, 0);
        reason = "moved";
      } else if (this.pending && this.pending.now) {
        failures = 0;
        delay = 0;
      } else if (end.opened) {
        failures = 0;
        transportFailures = 0;
        // The stream was open and ended (node gone, drained, slow cut-off):
        // the server's retry: spreads the reconnects.
        delay = Math.round((this.retryMs || (this.opts.backoff && this.opts.backoff.initial) || 500) * (0.5 + Math.random() * 0.5));
      } else {
        failures++;
        const he = end.httpError;
        // A transport that cannot even get an answer twice in a row (a
        // proxy that refuses WebSocket upgrades or buffers streams) gives
        // way to the next one in the fallback order.
        if (!he && ++transportFailures >= 2 && order.length > 1) {
          ti = (ti + 1) % order.length;
          transportFailures = 0;
        }
        if (he && he.alternates.length) {
          this.alternates = he.alternates.map(trimSlash);
        }
        if (he && he.cursor && !this.cursor) this.cursor = he.cursor;
        let attempt = failures;
        if (he && !he.retryable) {
          this.setStatus("failed", { error: he });
          if (this.opts.onError) this.opts.onError(he);
          if (he.code === "invalid_cursor") {
            // A cursor no node accepts (corrupted storage, a format from
            // the future) would be refused forever: start afresh, as a
            // browser EventSource does after its invalid_cursor reset.
            this.cursor = "";
            this.save();
          } else if (he.status !== 401) {
            // Forbidden, bad topic: not healed by retrying soon. (401 is
            // retried at once with a fresh token from getToken.)
            attempt = 100;
          }
        }
        const floor = Math.max(he ? he.retryAfter * 1000 : 0, this.retryMs || 0);
        delay = backoffDelay(attempt, this.opts.backoff || {}, floor);
        // Fail over: the next candidate URL (home list, then alternates).
        if (he && he.code === "evacuating" && this.alternates.length) this.current = this.alternates.find((u) => u !== url) || this.nextURL(url);
        else this.current = this.nextURL(url);
      }
      this.setStatus("reconnecting", { reason, delay, error: end.error || end.httpError });
      await sleep(delay, this.stop.signal);
    }
  }

  streamURL(base, withCursorInQuery) {
    const u = new URL(base + "/v1/stream");
    for (const t of this.topics) u.searchParams.append("topic", t);
    if (withCursorInQuery && this.cursor) u.searchParams.set("last_event_id", this.cursor);
    else if (!this.cursor && this.opts.from) u.searchParams.set("from", this.opts.from);
    return u.toString();
  }

  /**
   * Runs one connection until it ends; resolves with how it ended.
   * @returns {Promise<{opened: boolean, moved?: any, reason?: string, error?: any, httpError?: HeraldError, unsupported?: boolean}>}
   */
  connect(kind, url, tok, ctl) {
    switch (kind) {
      case "fetch":
        return this.connectFetch(url, tok, ctl);
      case "eventsource":
        return this.connectEventSource(url, ctl);
      case "websocket":
        return this.connectWebSocket(url, tok, ctl);
      default:
        return Promise.resolve({ opened: false, unsupported: true, error: new Error("herald: unknown transport " + kind) });
    }
  }

  /** Called for each opened connection: token refresh and fail back home. */
  armTimers(url, tok, ctl) {
    const timers = [];
    if (tok.expiresAt) {
      const now = Date.now();
      const life = Math.max(0, tok.expiresAt - now);
      const margin = Math.min(this.opts.tokenRefreshMargin ?? 30000, life * 0.2);
      timers.push(setTimeout(() => this.reconnect("token_refresh"), Math.max(0, life - margin)));
    }
    const home = this.home[0];
    const every = this.opts.failbackInterval ?? 30000;
    if (url !== home && this.home.length && every > 0) {
      const probe = async () => {
        if (ctl.signal.aborted || this.closed) return;
        if (await this.healthy(home)) this.reconnect("failback", home);
        else timers.push(setTimeout(probe, every));
      };
      timers.push(setTimeout(probe, every));
    }
    ctl.signal.addEventListener("abort", () => timers.forEach(clearTimeout), { once: true });
  }

  async healthy(base) {
    const f = this.opts.fetch || globalThis.fetch;
    try {
      const res = await f(base + "/readyz", { signal: AbortSignal.timeout(3000), cache: "no-store" });
      return res.ok;
    } catch {
      return false;
    }
  }

  /**
   * Handles one frame; returns "moved" when the stream is being closed by
   * an evacuation.
   * @param {{type: string, data: string, id: string}} ev
   */
  frame(ev, conn, topic) {
    switch (ev.type) {
      case HELLO: {
        let h = {};
        try {
          h = JSON.parse(ev.data);
        } catch {
          /* keep going: ids still resume */
        }
        this.locator.hello(h, h.cursor);
        if (h.cursor) {
          this.cursor = h.cursor;
          this.save();
        }
        if (Array.isArray(h.alternates)) this.alternates = h.alternates.map(trimSlash);
        conn.opened = true;
        this.setStatus("open", { node: h.node, origin: h.origin, resumed: !!h.resumed, session: h.session });
        return;
      }
      case RESET: {
        this.locator.seen(ev.id);
        this.cursor = ev.id;
        this.save();
        let r = { streams: [] };
        try {
          r = JSON.parse(ev.data);
        } catch {
          /* ignore */
        }
        if (this.opts.onReset) this.opts.onReset(r.streams || [], ev.id);
        return;
      }
      case MOVED: {
        let m = { reason: "", alternates: [] };
        try {
          m = JSON.parse(ev.data);
        } catch {
          /* ignore */
        }
        conn.moved = m;
        if (this.opts.onMoved) this.opts.onMoved(m);
        return "moved";
      }
    }
    if (ev.type.startsWith("herald.")) return; // future control events
    const at = this.locator.advance(ev.id) || { topic: "", origin: "", offset: 0 };
    if (topic) at.topic = topic; // WebSocket frames name it; the id agrees
    this.cursor = ev.id;
    this.save();
    if (this.opts.onEvent) {
      this.opts.onEvent({ topic: at.topic, origin: at.origin, offset: at.offset, type: ev.type, data: ev.data, id: ev.id });
    }
  }

  async connectFetch(url, tok, ctl) {
    const f = this.opts.fetch || globalThis.fetch;
    /** @type {Record<string, string>} */
    const headers = { Accept: "text/event-stream", "Herald-Client": CLIENT_NAME, ...(this.opts.headers || {}) };
    if (tok.token) headers.Authorization = "Bearer " + tok.token;
    if (this.cursor) headers["Last-Event-ID"] = this.cursor;
    const conn = { opened: false, moved: null };
    // A connection that went silent (a half-open TCP connection after a
    // partition: no FIN, no error) is noticed by the missing heartbeats;
    // the same bound covers a connect that gets no answer.
    const idle = this.opts.idleTimeout ?? 45000;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let idleTimer;
    const watch = () => {
      if (idle <= 0) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        this.pending = { reason: "idle", now: false };
        ctl.abort();
      }, idle);
    };
    watch();
    let res;
    try {
      res = await f(this.streamURL(url, false), {
        headers,
        signal: ctl.signal,
        cache: "no-store",
        credentials: this.opts.withCredentials ? "include" : "same-origin",
      });
    } catch (err) {
      clearTimeout(idleTimer);
      return { opened: false, error: err };
    }
    if (!res.ok) {
      clearTimeout(idleTimer);
      return { opened: false, httpError: await errorOf(res) };
    }
    if (!res.body || typeof res.body.getReader !== "function") {
      clearTimeout(idleTimer);
      return { opened: false, unsupported: true };
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let moved = false;
    const parser = new SSEParser((ev) => {
      if (this.frame(ev, conn) === "moved") moved = true;
    }, {
      lastEventId: this.cursor,
      onRetry: (ms) => (this.retryMs = ms),
      onId: (id) => {
        // An id-only block (a shed answer's position) moves the cursor too.
        if (id && !conn.opened) this.cursor = id;
      },
    });
    let armed = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watch();
        parser.push(value);
        if (conn.opened && !armed) {
          armed = true;
          this.armTimers(url, tok, ctl);
        }
        if (moved) break;
      }
    } catch (err) {
      return { opened: conn.opened, moved: conn.moved, error: ctl.signal.aborted ? undefined : err };
    } finally {
      clearTimeout(idleTimer);
      ctl.abort();
      reader.cancel().catch(() => {});
    }
    return { opened: conn.opened, moved: conn.moved };
  }

  /**
   * WebSocket transport: GET /v1/ws, one JSON message per event
   * {"id","event","topic","data"} with the same cursor ids as SSE. The token
   * goes in an auth message (not in the URL); refusals arrive as a
   * herald.error frame and a close code 4000 + HTTP status (4503 with
   * retry_ms in the close reason).
   */
  connectWebSocket(url, tok, ctl) {
    const WS = this.opts.WebSocket || globalThis.WebSocket;
    if (!WS) return Promise.resolve({ opened: false, unsupported: true });
    const u = new URL(this.streamURL(url, true).replace("/v1/stream", "/v1/ws"));
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return new Promise((resolve) => {
      const conn = { opened: false, moved: null };
      /** @type {any} */
      let lastError = null;
      let finished = false;
      const idle = this.opts.idleTimeout ?? 45000;
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let idleTimer;
      const ws = new WS(u.toString());
      const finish = (/** @type {any} */ r) => {
        if (finished) return;
        finished = true;
        clearTimeout(idleTimer);
        try {
          ws.close(1000);
        } catch {
          /* already closed */
        }
        resolve(r);
      };
      const watch = () => {
        if (idle <= 0) return;
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => {
          this.pending = { reason: "idle", now: false };
          finish({ opened: conn.opened, reason: "idle" });
        }, idle);
      };
      watch();
      ws.onopen = () => {
        watch();
        if (tok.token) ws.send(JSON.stringify({ type: "auth", token: tok.token }));
      };
      ws.onmessage = (/** @type {MessageEvent} */ m) => {
        watch();
        let f;
        try {
          f = JSON.parse(m.data);
        } catch {
          return;
        }
        if (!f || typeof f.event !== "string") return;
        if (f.event === "herald.error") {
          try {
            const e = JSON.parse(f.data);
            if (!e.ref) lastError = { ...(e.error || {}), retryAfter: e.retry_after || 0 };
          } catch {
            /* ignore */
          }
          if (f.id && !this.cursor) this.cursor = f.id; // a fresh stream's position
          return;
        }
        if (f.event === "herald.ack") return;
        const r = this.frame({ type: f.event, data: typeof f.data === "string" ? f.data : "", id: f.id || "" }, conn, f.topic);
        if (f.event === HELLO) this.armTimers(url, tok, ctl);
        if (r === "moved") finish({ opened: conn.opened, moved: conn.moved });
      };
      ws.onclose = (/** @type {CloseEvent} */ ev) => {
        let why = { reason: "", retry_ms: 0 };
        try {
          why = { ...why, ...JSON.parse(ev.reason || "{}") };
        } catch {
          /* not JSON */
        }
        if (why.retry_ms > 0) this.retryMs = why.retry_ms;
        let httpError;
        if (!conn.opened && ev.code >= 4400 && ev.code < 4600) {
          httpError = new HeraldError(ev.code - 4000, lastError || { code: why.reason }, lastError ? lastError.retryAfter : Math.ceil((why.retry_ms || 0) / 1000));
        }
        finish({ opened: conn.opened, moved: conn.moved, httpError, reason: why.reason || (ev.code === 1000 ? "ended" : "error") });
      };
      ctl.signal.addEventListener("abort", () => finish({ opened: conn.opened }), { once: true });
    });
  }

  connectEventSource(url, ctl) {
    const ES = this.opts.EventSource || globalThis.EventSource;
    if (!ES) return Promise.resolve({ opened: false, unsupported: true });
    return new Promise((resolve) => {
      const conn = { opened: false, moved: null };
      const es = new ES(this.streamURL(url, true), { withCredentials: !!this.opts.withCredentials });
      let finished = false;
      const finish = (r) => {
        if (finished) return;
        finished = true;
        es.close();
        resolve(r);
      };
      const on = (type) =>
        es.addEventListener(type, (e) => {
          const r = this.frame({ type, data: e.data, id: e.lastEventId }, conn);
          if (type === HELLO) this.armTimers(url, { expiresAt: 0 }, ctl);
          if (r === "moved") finish({ opened: true, moved: conn.moved });
        });
      for (const t of [HELLO, RESET, MOVED, "message", ...(this.opts.eventTypes || [])]) on(t);
      // The browser would reconnect by itself to the same URL; Herald's
      // client reconnects itself instead, so that it can fail over.
      es.onerror = () => finish({ opened: conn.opened, reason: "error" });
      ctl.signal.addEventListener("abort", () => finish({ opened: conn.opened }), { once: true });
    });
  }
}

/**
 * Publishes one event, retrying under the same idempotency key (so a retry
 * after a lost answer stores nothing twice) across the given URLs and the
 * alternates an evacuated region names.
 * @param {string} topic
 * @param {string} event event type ("" or "message" for the default)
 * @param {unknown} data a string is sent as is; anything else as JSON
 * @param {import("./herald.js").PublishOptions} opts
 */
export async function publish(topic, event, data, opts) {
  const f = opts.fetch || globalThis.fetch;
  let urls = asList(opts && opts.urls);
  if (urls.length === 0) throw new TypeError("herald: publish needs urls");
  const key = opts.idempotencyKey || randomKey();
  const attempts = opts.attempts ?? 6;
  const body = JSON.stringify({ event: event || undefined, data });
  let url = urls[0];
  let last;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (opts.signal && opts.signal.aborted) throw opts.signal.reason || new Error("aborted");
    const tok = await resolveToken(opts.getToken);
    /** @type {Record<string, string>} */
    const headers = { "Content-Type": "application/json", "Idempotency-Key": key, "Herald-Client": CLIENT_NAME };
    if (tok.token) headers.Authorization = "Bearer " + tok.token;
    let floor = 0;
    try {
      const res = await f(url + "/v1/topics/" + encodeURIComponent(topic) + "/events", {
        method: "POST",
        headers,
        body,
        signal: opts.signal,
      });
      if (res.ok) return await res.json();
      last = await errorOf(res);
      if (!last.retryable) throw last;
      floor = last.retryAfter * 1000;
      if (last.alternates.length) {
        urls = [...new Set([...last.alternates.map(trimSlash), ...urls])].filter((u) => u !== url || last.code !== "evacuating");
        url = urls[0];
      }
    } catch (err) {
      if (err instanceof HeraldError && !err.retryable) throw err;
      if (!(err instanceof HeraldError)) {
        last = err;
        url = urls[(urls.indexOf(url) + 1) % urls.length];
      }
    }
    if (attempt < attempts) await sleep(backoffDelay(attempt, opts.backoff || { initial: 200, max: 5000 }, floor), opts.signal);
  }
  throw last;
}

/**
 * A client bound to a set of URLs and a token callback.
 * @param {import("./herald.js").ClientOptions} cfg
 */
export function createClient(cfg) {
  return {
    subscribe: (topics, opts = {}) => subscribe(topics, { ...cfg, ...opts }),
    publish: (topic, event, data, opts = {}) => publish(topic, event, data, { ...cfg, ...opts }),
  };
}
