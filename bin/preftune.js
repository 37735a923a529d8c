#!/usr/bin/env node
// preftune command-line entry. An installed package runs the compiled JavaScript in dist/ (no loader); a
// development checkout (src/ present) runs the TypeScript sources through the tsx loader, so an edit needs no
// rebuild and a stale dist/ is never run. PREFTUNE_USE_DIST=1 runs dist/ from a checkout too.
import { existsSync } from "node:fs";

const here = (p) => new URL(p, import.meta.url);
const fromSource = existsSync(here("../src/cli/main.ts")) && process.env.PREFTUNE_USE_DIST !== "1";
let main;
if (!fromSource && existsSync(here("../dist/cli/main.js"))) {
  ({ main } = await import("../dist/cli/main.js"));
} else if (existsSync(here("../src/cli/main.ts"))) {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../src/cli/main.ts"));
} else {
  console.error("preftune: dist/ is missing from this package (it is built by `npm run build` at prepare/prepack); reinstall preftune");
  process.exit(1);
}
await main(process.argv);
