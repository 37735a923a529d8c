# Writes tests/fixtures/configs/param_counts.json: for every published config.json under tests/fixtures/configs/,
# the model class transformers builds from it and its parameter count (shared tensors such as a tied head counted
# once), built on the meta device so no weights are allocated. src/models/family.ts must reproduce each count
# from its own description of the family.
# Not a test and not a downloader: the config files are committed copies of the published ones.
# Needs a python3 with torch 2.x and transformers 5.x (written with torch 2.13, transformers 5.18). Usage, from the
# repo root:  python3 tools/reference/family_configs.py
import json
import os
import sys

sys.dont_write_bytecode = True

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDER = os.path.join(REPO, "tests", "fixtures", "configs")


def count(path):
    with open(path) as f:
        cfg = json.load(f)
    config = AutoConfig.for_model(cfg["model_type"], **{k: v for k, v in cfg.items() if k not in ("model_type", "auto_map")})
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return type(model).__name__, sum(p.numel() for p in model.parameters())


def main():
    transformers.utils.logging.set_verbosity_error()
    out = {"transformers": transformers.__version__, "torch": torch.__version__, "models": {}}
    for name in sorted(os.listdir(FOLDER)):
        if not name.endswith(".json") or name == "param_counts.json":
            continue
        cls, n = count(os.path.join(FOLDER, name))
        out["models"][name[:-len(".json")]] = {"class": cls, "parameters": n}
        print(f"{name[:-5]:24s} {cls:24s} {n:>14,d}")
    with open(os.path.join(FOLDER, "param_counts.json"), "w") as f:
        f.write(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
