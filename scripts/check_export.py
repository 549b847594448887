#!/usr/bin/env python3
"""PyTorch side of `petal export`: the exported state dict loads with strict=True into
torchvision's own model and gives PyTorch's logits.

For every model of tests/fixtures/zoo (scripts/make_zoo_fixtures.py) and both formats:
`petal export --weights <fixture>.pth --format safetensors|pth --out <tmp>/<name>.<fmt>`, then
`safetensors.torch.load_file` (or `torch.load(weights_only=True)`) →
`model.load_state_dict(sd, strict=True)` into the torchvision model of the same architecture —
for the `timm_*` fixtures the *torchvision* model of the same network, so timm's spelling
converted by petal is checked too — and the logits on the fixture's input compared with the
fixture's logits (max |Δ| / max |ref|). Prints one line per model; exits 1 on any failure.

    PETAL_BIN=target/release/petal /tmp/fx/bin/python scripts/check_export.py
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_zoo_fixtures as zoo  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "zoo")
PETAL = os.environ.get("PETAL_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "petal")

# The torchvision model of the same network as each timm fixture.
TORCHVISION_TWIN = {
    # timm keeps a 64-channel stem whatever `stem_width` says (it is for deep stems only).
    "timm_resnet": lambda: zoo.tiny_resnet(BasicBlock, [1, 1, 1, 1], 64, [8, 16, 32, 64]),
    "timm_efficientnet": lambda: EfficientNet(
        _efficientnet_conf("efficientnet_b0", width_mult=0.1, depth_mult=0.5)[0], dropout=0.2,
        num_classes=10),
    "timm_convnext": lambda: zoo.convnext()[0],
}


def f32(name, shape):
    return torch.from_numpy(np.fromfile(os.path.join(FIXTURES, name), dtype="<f4").reshape(shape))


def main():
    manifest = json.load(open(os.path.join(FIXTURES, "manifest.json")))
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for m, fmt in [(m, fmt) for m in manifest["models"] for fmt in ("safetensors", "pth")]:
            name = m["name"]
            out = os.path.join(tmp, f"{name}.{fmt}")
            subprocess.run([PETAL, "export", "--weights", os.path.join(FIXTURES, m["pth"]),
                            "--format", fmt, "--out", out], check=True, stdout=subprocess.DEVNULL)
            model = TORCHVISION_TWIN[name]() if name in TORCHVISION_TWIN else zoo.TINY[name][1]()[0]
            sd = load_file(out) if fmt == "safetensors" else torch.load(out, weights_only=True)
            try:
                model.load_state_dict(sd, strict=True)
            except RuntimeError as e:
                print(f"{name}: strict load failed: {e}")
                failed += 1
                continue
            model.eval()
            with torch.no_grad():
                logits = model(f32(m["input"], m["input_shape"]))
            want = f32(m["logits"], m["logits_shape"])
            err = ((logits - want).abs().max() / want.abs().max()).item()
            status = "ok" if err <= 1e-5 else "FAIL"
            failed += status != "ok"
            print(f"{name:<22} {fmt:<11} {len(sd):>4} tensors, strict load ok, "
                  f"max rel logit diff {err:.2e}  {status}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
