// Test helper: asserts that a train config is refused with a ConfigError whose message matches every pattern.
import assert from "node:assert/strict";
import { ConfigError, resolveConfig } from "../../src/train/config.ts";

export function configFails(raw: Record<string, unknown>, ...patterns: RegExp[]): void {
  assert.throws(() => resolveConfig(raw, "cfg.yaml"), (e: Error) => {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}
