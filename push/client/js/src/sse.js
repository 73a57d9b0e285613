// A text/event-stream parser for the fetch-streaming transport, following
// the WHATWG HTML "event stream interpretation" rules: lines end with CRLF,
// LF or CR; a leading BOM is skipped; "data" lines join with LF; "id" sets
// the last event id (ignored when it contains NUL); "retry" takes digits
// only; comments and unknown fields are ignored; a blank line dispatches.
// Blocks with no data dispatch nothing but still set the last event id, as
// in a browser.

/**
 * @typedef {object} SSEEvent
 * @property {string} type
 * @property {string} data
 * @property {string} id the last event id at dispatch
 */

export class SSEParser {
  /**
   * @param {(ev: SSEEvent) => void} onEvent
   * @param {{lastEventId?: string, onRetry?: (ms: number) => void, onId?: (id: string) => void, maxLine?: number}} [opts]
   */
  constructor(onEvent, opts = {}) {
    this.onEvent = onEvent;
    this.onRetry = opts.onRetry || (() => {});
    this.onId = opts.onId || (() => {});
    this.maxLine = opts.maxLine || 1 << 20;
    this.lastEventId = opts.lastEventId || "";
    this.buf = "";
    this.started = false;
    this.skipLF = false;
    this.data = [];
    this.hasData = false;
    this.type = "";
    this.pendingId = null;
  }

  /**
   * push feeds decoded text; it may hold a partial line until the next call.
   * @param {string} text
   */
  push(text) {
    if (!this.started && (this.buf.length > 0 || text.length > 0)) {
      const all = this.buf + text;
      if (all.length === 0) return;
      this.started = true;
      this.buf = all.charCodeAt(0) === 0xfeff ? all.slice(1) : all;
    } else {
      this.buf += text;
    }
    let start = 0;
    const s = this.buf;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 10 && this.skipLF && i === start) {
        this.skipLF = false;
        start = i + 1;
        continue;
      }
      this.skipLF = false;
      if (c === 10 || c === 13) {
        this.line(s.slice(start, i));
        if (c === 13) this.skipLF = true;
        start = i + 1;
      }
    }
    this.buf = s.slice(start);
    if (this.buf.length > this.maxLine) throw new Error("herald: event-stream line too long");
  }

  /** @param {string} line */
  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58) return; // comment
    const colon = line.indexOf(":");
    let field = line, value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case "data":
        this.data.push(value);
        this.hasData = true;
        break;
      case "event":
        this.type = value;
        break;
      case "id":
        if (!value.includes("\0")) this.pendingId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.onRetry(Number(value));
        break;
    }
  }

  dispatch() {
    if (this.pendingId !== null) {
      this.lastEventId = this.pendingId;
      this.pendingId = null;
      this.onId(this.lastEventId);
    }
    if (this.hasData) {
      const ev = { type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId };
      this.data = [];
      this.hasData = false;
      this.type = "";
      this.onEvent(ev);
    } else {
      this.type = "";
    }
  }
}
