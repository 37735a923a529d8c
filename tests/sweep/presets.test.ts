// Every sweep preset in presets/sweeps/ plans: its grid and every cell's config validate once the model folder and
// output_dir are given (the data is not read when planning).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { planSweep } from "../../src/sweep/run.ts";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "presets", "sweeps");

for (const f of readdirSync(dir).filter((n) => n.endsWith(".yaml"))) {
  test(`presets/sweeps/${f} plans`, () => {
    const plan = planSweep({ configFile: join(dir, f), overrides: ["--model_name_or_path", "some/model", "--output_dir", join(tmpdir(), "preftune-preset-plan-never-written")] });
    assert.ok(plan.cells.length > 1);
    for (const cfg of plan.configs.values()) assert.equal(cfg.model_name_or_path, "some/model");
  });
}

test("the pref_align_scan presets: DPO, IPO and KTO × the study's ten betas at learning rate 5e-7", () => {
  const plan = planSweep({ configFile: join(dir, "pref-align-scan-zephyr.yaml"), overrides: ["--model_name_or_path", "m", "--output_dir", join(tmpdir(), "preftune-preset-plan-never-written")] });
  assert.deepEqual(plan.axes.map((a) => [a.key, a.values]), [["method", ["dpo", "ipo", "kto"]], ["beta", [0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]]]);
  assert.equal(plan.cells.length, 30);
  assert.equal(plan.base.learning_rate, 5e-7);
  // a --grid on the command line replaces the file's axis of the same key
  const narrow = planSweep({ configFile: join(dir, "pref-align-scan-zephyr.yaml"), overrides: ["--model_name_or_path", "m", "--output_dir", join(tmpdir(), "x")], grid: ["beta=0.01,0.1"] });
  assert.deepEqual(narrow.cells.map((c) => c.name), ["method=dpo,beta=0.01", "method=dpo,beta=0.1", "method=ipo,beta=0.01", "method=ipo,beta=0.1", "method=kto,beta=0.01", "method=kto,beta=0.1"]);
});
