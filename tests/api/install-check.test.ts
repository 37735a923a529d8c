// scripts/install-check.js, run at `npm install` before the native build: with the build tools and OpenBLAS
// missing it stops and names the Debian/Ubuntu and Homebrew packages to add; with them present it passes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { scratch } from "../helpers/tiny-model.ts";

const script = join(resolve(dirname(fileURLToPath(import.meta.url)), "..", ".."), "scripts", "install-check.js");

test("missing compiler, make, Python and OpenBLAS: the install stops naming the apt and brew packages", () => {
  const empty = scratch("preftune-empty-");
  try {
    const r = spawnSync(process.execPath, [script], { env: { PATH: empty.dir, PREFTUNE_INCLUDE_DIRS: empty.dir }, encoding: "utf8" });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /Debian\/Ubuntu: sudo apt-get install g\+\+ make python3 libopenblas-openmp-dev/);
    assert.match(r.stderr, /macOS: +xcode-select --install && brew install python openblas libomp/);
    assert.match(r.stderr, /libdnnl-dev/);   // oneDNN: optional, a note
  } finally {
    empty.cleanup();
  }
});

test("with only OpenBLAS missing, only its package is named", (t) => {
  const tools = spawnSync("sh", ["-c", "command -v make && command -v python3 && (command -v g++ || command -v c++)"]).status === 0;
  if (!tools) { t.skip("this machine lacks the build tools itself"); return; }
  const empty = scratch("preftune-empty-");
  try {
    const r = spawnSync(process.execPath, [script], { env: { ...process.env, PREFTUNE_INCLUDE_DIRS: empty.dir }, encoding: "utf8" });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /apt-get install libopenblas-openmp-dev\n/);
    assert.match(r.stderr, /brew install openblas libomp/);
  } finally {
    empty.cleanup();
  }
});
