// Two local regions for the tests (see startRegions).
import { startRedis, startHerald, waitFor, http } from "./harness.mjs";

const regionEnv = {
  HERALD_FEDERATION__INTERVAL: "200ms",
  HERALD_FEDERATION__REPLICA_WAIT: "1s",
  HERALD_FEDERATION__EVACUATION_WINDOW: "1s",
  HERALD_FEDERATION__EVACUATION_CATCH_UP: "20s",
  HERALD_STREAM__HEARTBEAT: "1s",
  HERALD_STREAM__RETRY_MIN: "200ms",
  HERALD_STREAM__RETRY_MAX: "500ms",
};

/** startRegions starts regions a and b with one node each. */
export async function startRegions(t, env, o = {}) {
  const pa = await startRedis(t, { appendOnly: true });
  const pb = await startRedis(t, { appendOnly: true });
  const ra = await startRedis(t, { replicaOf: pb.addr }); // a's replica of b
  const rb = await startRedis(t, { replicaOf: pa.addr }); // b's replica of a
  const args = (name, primary, other, replica) => ["--region", name, "--redis", primary.url,
    "--remote-redis", `${other}=${replica.url}`, "--gossip-listen", "127.0.0.1:0", "--wan-listen", "127.0.0.1:0"];
  const a1 = await startHerald(t, "a1", args("a", pa, "b", ra), { ...regionEnv, ...env }, { listen: o.aListen });
  const b1 = await startHerald(t, "b1", [...args("b", pb, "a", rb), "--wan-join", a1.wan], { ...regionEnv, ...env });
  for (const n of [a1, b1]) {
    await waitFor(`${n.name} sees both regions serving`, async () => {
      const r = await http("GET", n.admin + "/v1/region");
      return r.status === 200 && (r.body.regions || []).filter((x) => x.serving >= 1).length === 2;
    }, 30000);
  }
  return { a1, b1, pa, pb, ra, rb };
}

