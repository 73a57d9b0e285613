// Shared pieces of the browser tests: a page with the client loaded, a
// report channel from the page to the test, and a ledger that checks
// deliveries against acknowledged publishes (0 lost, 0 duplicated, order
// per stream, and the topic/origin/offset the client decoded).
import assert from "node:assert/strict";
import { launchBrowser, startPageServer, waitFor, publishOK } from "./harness.mjs";

/**
 * openClientPage starts a page server and Chromium and opens the test page
 * with window.herald loaded. Page reports land in `reports`.
 */
export async function openClientPage(t, routes = {}) {
  const pageURL = await startPageServer(t, routes);
  const ctx = await launchBrowser(t);
  const reports = [];
  await ctx.exposeFunction("report", (r) => reports.push(r));
  const page = await ctx.newPage();
  await page.goto(pageURL + "/test.html");
  await page.waitForFunction(() => window.heraldReady === true);
  return { ctx, page, pageURL, reports };
}

/** startSubscription runs herald.subscribe in the page, reporting everything. */
export async function startSubscription(page, topics, opts) {
  await page.evaluate(
    ({ topics, opts }) => {
      const report = window.report;
      const o = {
        ...opts,
        onEvent: (e) => report({ kind: "event", ...e }),
        onReset: (streams, id) => report({ kind: "reset", streams, id }),
        onMoved: (m) => report({ kind: "moved", ...m }),
        onStatus: (s) => report({ kind: "status", state: s.state, url: s.url, reason: s.reason || "", transport: s.transport, origin: s.origin || "" }),
      };
      if (opts.tokenURL) {
        o.getToken = async () => {
          const r = await fetch(opts.tokenURL, { cache: "no-store" });
          return r.text();
        };
      }
      window.sub = window.herald.subscribe(topics, o);
    },
    { topics, opts },
  );
}

export class Ledger {
  constructor() {
    /** data → {topic, origin, offset} */
    this.sent = new Map();
  }

  async publish(base, topic, data, event = "note") {
    const r = await publishOK(base, topic, event, data);
    this.sent.set(data, { topic, origin: r.origin, offset: r.offset });
    return r;
  }

  /** events in reports (kind "event") whose data this ledger sent */
  received(reports) {
    return reports.filter((r) => r.kind === "event" && this.sent.has(r.data));
  }

  async waitAll(reports, what, timeout = 30000) {
    await waitFor(what, () => new Set(this.received(reports).map((e) => e.data)).size >= this.sent.size, timeout);
  }

  /**
   * check asserts: every sent event received exactly once, with the topic,
   * origin and offset of its acknowledgement, in offset order per stream.
   */
  check(reports) {
    const got = this.received(reports);
    const seen = new Map();
    const last = new Map();
    let dups = 0;
    for (const e of got) {
      if (seen.has(e.data)) dups++;
      seen.set(e.data, e);
      const want = this.sent.get(e.data);
      assert.equal(e.topic, want.topic, `topic of ${e.data}`);
      assert.equal(e.origin, want.origin, `origin of ${e.data}`);
      assert.equal(e.offset, want.offset, `offset of ${e.data}`);
      const k = e.topic + "@" + e.origin;
      assert.ok((last.get(k) || 0) < e.offset, `order in ${k}: ${e.offset} after ${last.get(k)}`);
      last.set(k, e.offset);
    }
    const lost = [...this.sent.keys()].filter((d) => !seen.has(d));
    assert.equal(dups, 0, "duplicated events");
    assert.deepEqual(lost, [], "lost events");
    return { received: got.length, dups, lost: lost.length };
  }
}

export function statuses(reports) {
  return reports.filter((r) => r.kind === "status");
}
