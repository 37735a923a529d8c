// For tools/interop/check_family_configs.py: each IN_DIR/<name>.orig.json (a config.json) read by parseConfig and
// written back by configToJson into OUT_DIR/<name>.ours.json, or the refusal into OUT_DIR/<name>.refused.txt.
// Usage: node --import tsx tools/interop/family-configs.ts DIR
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configJsonText, configToJson, parseConfig } from "../../src/models/config.ts";

const dir = process.argv[2];
if (!dir) throw new Error("usage: family-configs.ts DIR");
for (const f of readdirSync(dir).filter((x) => x.endsWith(".orig.json"))) {
  const name = f.slice(0, -".orig.json".length);
  try {
    const cfg = parseConfig(JSON.parse(readFileSync(join(dir, f), "utf8")), f);
    writeFileSync(join(dir, `${name}.ours.json`), configJsonText(configToJson(cfg)));   // as saveModel writes it
  } catch (e) {
    writeFileSync(join(dir, `${name}.refused.txt`), (e as Error).message);
  }
}
