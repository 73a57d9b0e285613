// Compiled by types.test.mjs with tsc --noEmit: the declarations describe
// the API as an app uses it (and reject what they should).
import { subscribe, publish, createClient, HeraldError, StreamLocator, type HeraldEvent, type StreamReset, type Status } from "../../src/herald.js";

const seen: HeraldEvent[] = [];
const sub = subscribe(["a", "b"], {
  urls: ["https://eu.example", "https://us.example"],
  persist: true,
  transport: ["fetch", "eventsource"],
  getToken: async () => ({ token: "t", expiresAt: Date.now() + 60_000 }),
  onEvent: (e) => {
    const n: number = e.offset;
    const s: string = e.topic + e.origin + e.type + e.data + e.id + n;
    seen.push(e);
    void s;
  },
  onReset: (streams: StreamReset[]) => streams.forEach((r) => r.lost_from + r.lost_to),
  onMoved: (m) => m.alternates.join(),
  onStatus: (s: Status) => s.state === "open" && s.node,
});
const cursor: string = sub.cursor;
sub.reconnect("manual");
sub.close();
void sub.done.then(() => cursor);

async function pub(): Promise<number> {
  const r = await publish("orders", "created", { id: 1 }, { urls: "https://eu.example", idempotencyKey: "k1" });
  return r.offset;
}
void pub;

const c = createClient({ urls: ["https://eu.example"], getToken: () => "token" });
c.subscribe(["x"], { onEvent: (e) => e.data });
try {
  throw new HeraldError();
} catch (e) {
  if (e instanceof HeraldError && e.retryable) void e.alternates;
}
const loc = new StreamLocator();
loc.hello({ topics: ["a"], origins: ["eu"] }, "id");
const at = loc.advance("id");
if (at) void (at.topic + at.offset);

// @ts-expect-error topics must be an array of strings
subscribe("a", { urls: "x" });
// @ts-expect-error urls is required
subscribe(["a"], {});
// @ts-expect-error no such transport
subscribe(["a"], { urls: "x", transport: "carrier-pigeon" });
