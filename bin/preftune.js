#!/usr/bin/env node
// preftune command-line entry: registers the TypeScript loader and hands over to src/cli/main.ts.
import { register } from "tsx/esm/api";
register();
const { main } = await import("../src/cli/main.ts");
await main(process.argv);
