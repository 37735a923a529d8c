"""Writes tests/fixtures/optim8bit/dynamic-maps.json: bitsandbytes' two dynamic quantization maps (8-bit,
7 exponent bits), signed (exp_avg) and unsigned (exp_avg_sq), built here from their definition with torch's own
float32 linspace and arithmetic, so the native core's fp32 construction can be checked bit for bit without
Python at test time. Definition: for decade i = 0..6, the midpoints of linspace(0.1, 1, k + 1) with k = 2^i
(signed) or 2^(i+1) (unsigned), times 10^(i-6), both signs when signed; then 0 and 1; sorted ascending.

Usage: python3 tools/reference/optim8bit_fixtures.py [--out DIR]   (DIR defaults to tests/fixtures)
"""
import argparse
import json
import os

import torch


def dynamic_map(signed: bool) -> list:
    values = []
    for i in range(7):
        k = 2 ** i if signed else 2 ** (i + 1)
        edges = torch.linspace(0.1, 1.0, k + 1, dtype=torch.float32)
        means = (edges[:-1] + edges[1:]) / 2.0
        scale = 10.0 ** (i - 6)
        values += (scale * means).tolist()
        if signed:
            values += (-scale * means).tolist()
    values += [0.0, 1.0]
    assert len(values) == 256
    return torch.tensor(sorted(values), dtype=torch.float32).tolist()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures"))
    out = os.path.join(ap.parse_args().out, "optim8bit")
    os.makedirs(out, exist_ok=True)
    doc = {"torch_version": torch.__version__, "signed": dynamic_map(True), "unsigned": dynamic_map(False)}
    with open(os.path.join(out, "dynamic-maps.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
