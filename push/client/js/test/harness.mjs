// Test harness: real redis-server and herald processes on free loopback
// ports, a static server for the test page, and headless Chromium through
// playwright-core. Everything started is stopped by the test's cleanup.
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, existsSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, extname, normalize, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";

const here = dirname(fileURLToPath(import.meta.url));
export const pkgDir = join(here, "..");
export const repoDir = join(pkgDir, "..", "..", "..");

/** Where screenshots go: HERALD_TEST_OUT or <repo>/bin/test-artifacts/js. */
export const artifactsDir = process.env.HERALD_TEST_OUT || join(repoDir, "bin", "test-artifacts", "js");

/**
 * requireTool fails the test when a tool is missing under CI and reports a
 * skip reason otherwise; never a silent pass.
 */
export function requireTool(t, path, what) {
  if (existsSync(path)) return true;
  const msg = `${what} not found at ${path} (make deps installs it)`;
  if (process.env.CI === "true" || process.env.HERALD_REQUIRE_BROWSER === "1") throw new Error(msg);
  t.skip(msg);
  return false;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** waitFor polls cond every 25 ms until it returns truthy or the deadline passes. */
export async function waitFor(what, cond, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

let builtBin = "";
/** heraldBin returns HERALD_BIN or builds ./cmd/herald once. */
export function heraldBin() {
  if (process.env.HERALD_BIN) return process.env.HERALD_BIN;
  if (!builtBin) {
    const dir = mkdtempSync(join(tmpdir(), "herald-js-bin-"));
    builtBin = join(dir, "herald");
    execFileSync("go", ["build", "-o", builtBin, "./cmd/herald"], { cwd: repoDir, stdio: "inherit" });
  }
  return builtBin;
}

class Proc {
  constructor(name, child) {
    this.name = name;
    this.child = child;
    this.out = "";
    this.exited = new Promise((r) => child.on("exit", r));
  }
  kill9() {
    try {
      this.child.kill("SIGKILL");
    } catch {
      /* gone */
    }
    return this.exited;
  }
  tail(n = 30) {
    return this.out.split("\n").slice(-n).join("\n");
  }
}

/**
 * startRedis runs redis-server on a free loopback port (never 6379).
 * @param {import("node:test").TestContext} t
 * @param {{appendOnly?: boolean, replicaOf?: string}} [o]
 */
export async function startRedis(t, o = {}) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "herald-js-redis-"));
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir,
    "--appendonly", o.appendOnly ? "yes" : "no", "--appendfsync", "always",
    // Replicas sync at once instead of after the 5 s default delay.
    "--repl-diskless-sync-delay", "0"];
  if (o.replicaOf) args.push("--replicaof", ...o.replicaOf.split(":"));
  const p = new Proc("redis:" + port, spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] }));
  p.child.stdout.on("data", (d) => (p.out += d));
  t.after(async () => {
    await p.kill9();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor("redis-server on " + port, () => p.out.includes("Ready to accept"), 15000);
  p.addr = "127.0.0.1:" + port;
  if (o.replicaOf) {
    await waitFor("replica link up on " + port, () => {
      try {
        return execFileSync("redis-cli", ["-p", String(port), "info", "replication"]).toString().includes("master_link_status:up");
      } catch {
        return false;
      }
    }, 15000);
  }
  p.url = "redis://" + p.addr;
  return p;
}

/**
 * startHerald runs `herald serve` on free loopback ports and waits for its
 * banner. opts.dev defaults to true.
 * @returns {Promise<Proc & {url: string, admin: string, gossip?: string, wan?: string}>}
 */
export async function startHerald(t, name, args = [], env = {}, opts = {}) {
  const base = ["serve", "--node-name", name, "--listen", opts.listen || "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "info"];
  if (opts.dev !== false) base.push("--dev");
  const child = spawn(heraldBin(), [...base, ...args], {
    // The test's own HERALD_* variables (HERALD_BIN, ...) are not node config.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("HERALD_"))), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const p = new Proc(name, child);
  child.stderr.on("data", (d) => {
    p.out += d;
    if (p.out.length > 1 << 20) p.out = p.out.slice(-(1 << 19));
  });
  let sawURL = false;
  const ready = new Promise((resolve, reject) => {
    let buf = "";
    child.stdout.on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        const f = line.split(/\s+/);
        if (f[0] === "public" && f[1] === "API") {
          p.url = f[2];
          sawURL = true;
        } else if (f[0] === "admin" && f[1]) p.admin = f[1];
        else if (f[0] === "gossip") p.gossip = f[1];
        else if (f[0] === "wan") p.wan = f[1];
        else if (line === "" && sawURL) resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`${name} exited (${code}) at start:\n${p.tail()}`)));
  });
  t.after(() => p.kill9());
  let timer;
  try {
    await Promise.race([ready, new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`${name}: no banner in 30s\n${p.tail()}`)), 30000)))]);
  } finally {
    clearTimeout(timer);
  }
  return p;
}

/** HTTP JSON helper with a timeout. */
export async function http(method, url, body, headers = {}) {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? headers : { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json };
}

/** publishOK publishes and returns the acknowledged position, failing otherwise. */
export async function publishOK(base, topic, event, data, headers = {}) {
  const r = await http("POST", `${base}/v1/topics/${topic}/events`, { event, data }, headers);
  if (r.status !== 201) throw new Error(`publish ${topic} at ${base}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** mintJWT makes an HS256 token the way an identity provider would. */
export function mintJWT(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64(claims);
  const sig = createHmac("sha256", secret).update(head + "." + body).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const types = { ".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html; charset=utf-8", ".css": "text/css", ".ts": "text/plain" };

/**
 * startPageServer serves the client's src/ and a blank test page, plus any
 * extra routes (path → handler(req, res)).
 */
export async function startPageServer(t, routes = {}) {
  const srv = createServer((req, res) => {
    const u = new URL(req.url, "http://x");
    if (routes[u.pathname]) return routes[u.pathname](req, res, u);
    if (u.pathname === "/" || u.pathname === "/test.html") {
      res.writeHead(200, { "Content-Type": types[".html"] });
      return res.end(`<!doctype html><meta charset="utf-8"><title>herald js test</title>
<script type="module">import * as herald from "/src/herald.js"; window.herald = herald; window.heraldReady = true;</script>`);
    }
    const file = normalize(join(pkgDir, u.pathname));
    if (!file.startsWith(join(pkgDir, "src")) || !existsSync(file)) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "Content-Type": types[extname(file)] || "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  t.after(() => new Promise((r) => {
    srv.close(r);
    srv.closeAllConnections();
  }));
  return "http://127.0.0.1:" + srv.address().port;
}

export const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const chromiumArgs = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/**
 * launchBrowser starts Chromium with a fresh user-data-dir. The returned
 * context collects console errors and page errors in `errors`.
 */
export async function launchBrowser(t, viewport = { width: 1280, height: 900 }) {
  const { chromium } = await import("playwright-core");
  const dir = mkdtempSync(join(tmpdir(), "herald-js-chromium-"));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: chromiumPath,
    headless: true,
    args: chromiumArgs,
    viewport,
  });
  t.after(async () => {
    await ctx.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  ctx.errors = [];
  const watch = (page) => {
    page.on("console", (m) => {
      if (m.type() === "error") ctx.errors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => ctx.errors.push(`pageerror: ${e.message}`));
  };
  ctx.pages().forEach(watch);
  ctx.on("page", watch);
  return ctx;
}

/** screenshot keeps a PNG of the page under artifactsDir. */
export async function screenshot(page, name) {
  mkdirSync(artifactsDir, { recursive: true });
  const path = join(artifactsDir, name + ".png");
  await page.screenshot({ path, fullPage: true });
  return path;
}

export function writeTemp(name, text) {
  const dir = mkdtempSync(join(tmpdir(), "herald-js-cfg-"));
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
