// Every recipe in presets/ is a valid config for `preftune train` once the two required paths are given.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/train/config.ts";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "presets");

for (const f of readdirSync(dir).filter((n) => n.endsWith(".yaml"))) {
  test(`presets/${f} validates`, () => {
    const { config } = loadConfig(join(dir, f), ["--model_name_or_path", "some/model", "--output_dir", "runs/x"]);
    assert.ok(config.method);
    assert.equal(config.model_name_or_path, "some/model");
  });
}
