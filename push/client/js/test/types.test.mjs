// The TypeScript declarations: a consumer compiles under strict tsc (and
// the misuses it marks with @ts-expect-error are rejected), and every
// runtime export of herald.js is declared.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as herald from "../src/herald.js";

const dir = fileURLToPath(new URL("..", import.meta.url));

test("herald.d.ts compiles against a strict consumer", () => {
  const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
  try {
    execFileSync(process.execPath, [tsc, "-p", "test/types/tsconfig.json"], { cwd: dir, encoding: "utf8" });
  } catch (err) {
    assert.fail(`tsc: ${err.stdout}${err.stderr}`);
  }
});

test("the sources type-check against their JSDoc and declarations (checkJs)", () => {
  const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
  try {
    execFileSync(process.execPath, [tsc, "-p", "test/types/tsconfig.src.json"], { cwd: dir, encoding: "utf8" });
  } catch (err) {
    assert.fail(`tsc: ${err.stdout}${err.stderr}`);
  }
});

test("every runtime export is declared", () => {
  const dts = readFileSync(new URL("../src/herald.d.ts", import.meta.url), "utf8");
  const declared = new Set([...dts.matchAll(/export (?:declare )?(?:function|class|const|interface|type) (\w+)/g)].map((m) => m[1]));
  for (const m of dts.matchAll(/export \{([^}]+)\} from/g)) m[1].split(",").forEach((n) => declared.add(n.trim()));
  const missing = Object.keys(herald).filter((k) => !declared.has(k));
  assert.deepEqual(missing, []);
});
