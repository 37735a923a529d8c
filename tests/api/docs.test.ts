// docs/api.md documents every export of src/index.ts (the package's entry point) under a heading, so the
// reference cannot fall behind the code; and the examples it and the README point at exist.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Every name src/index.ts exports (values and types), read from its export lists. */
function exportedNames(): string[] {
  const src = readFileSync(join(repo, "src", "index.ts"), "utf8");
  const names: string[] = [];
  for (const m of src.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}/g)) {
    for (const part of m[1].split(",")) {
      const name = part.trim().replace(/^type\s+/, "").split(/\s+as\s+/).pop()!.trim();
      if (name) names.push(name);
    }
  }
  return names;
}

test("docs/api.md has a heading naming every export of src/index.ts", () => {
  const doc = readFileSync(join(repo, "docs", "api.md"), "utf8");
  const headings = doc.split("\n").filter((l) => l.startsWith("### ")).join("\n");
  const names = exportedNames();
  assert.ok(names.length >= 30, `found ${names.length} exports`);
  const missing = names.filter((n) => !new RegExp(`\`${n}\``).test(headings));
  assert.deepEqual(missing, [], `exports without a docs/api.md heading: ${missing.join(", ")}`);
});

test("the examples the README shows exist", () => {
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  const shown = [...readme.matchAll(/examples\/([a-z][\w-]*\.mjs)/g)].map((m) => m[1]);
  assert.ok(shown.length >= 4, "the README shows the examples");
  for (const f of shown) assert.ok(existsSync(join(repo, "examples", f)), `examples/${f}`);
});
