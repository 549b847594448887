#!/usr/bin/env python3
"""Compare `petal predict` with PyTorch/torchvision on the same weights and images.

The check of the foundation issue's acceptance point 2 ("petal predict on a real photo with
a real torchvision MobileNetV2 ImageNet file gives the same top-1 class as PyTorch"), for a
machine that has the file (petal never downloads it):

    python3 -m pip install torch torchvision pillow
    cargo build --release -p petal-cli
    python3 scripts/compare_predict.py --arch mobilenet_v2 \
        --weights mobilenet_v2-b0353104.pth photo1.jpg photo2.jpg

Prints, per image, PyTorch's and petal's top-1 (index, probability) and the max relative
logit error; exits 1 if any top-1 differs.
"""
import argparse
import json
import os
import subprocess
import sys

import torch
import torchvision
from PIL import Image
from torchvision import transforms


def head_key(arch):
    """torchvision's last classifier layer of each family."""
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return "fc.weight"
    if arch.startswith("convnext"):
        return "classifier.2.weight"
    if arch.startswith("mobilenet_v3"):
        return "classifier.3.weight"
    if arch.startswith(("mobilenet_v2", "efficientnet")):
        return "classifier.1.weight"
    return "classifier.weight"  # densenet


def build(arch, state_dict, width_mult):
    classes = state_dict[head_key(arch)].shape[0]
    if arch == "mobilenet_v2":
        model = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult, num_classes=classes)
    else:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
    if arch.startswith("densenet"):
        # torchvision's own rewrite of the 2017 legacy keys (norm.1 -> norm1, ...).
        import re
        pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
        state_dict = {(pattern.sub(r"\1\2", k)): v for k, v in state_dict.items()}
    model.load_state_dict(state_dict)
    return model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--arch", required=True,
                   help="a torchvision preset petal builds: densenet121, mobilenet_v2, resnet50, "
                        "efficientnet_b0, convnext_tiny, mobilenet_v3_large, ...")
    p.add_argument("--width-mult", type=float, default=1.0, help="MobileNetV2 width (1.0 for the ImageNet file)")
    p.add_argument("--petal", default=None, help="path of the petal binary (default: target/release/petal)")
    p.add_argument("--device", default="cpu", help="petal --device")
    p.add_argument("images", nargs="+")
    args = p.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    petal = args.petal or os.path.join(target, "release", "petal")
    model = build(args.arch, torch.load(args.weights, map_location="cpu"), args.width_mult)
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    out = subprocess.run([petal, "predict", "--weights", args.weights, "--device", args.device,
                          "--json", "--logits", "--topk", "1", *args.images],
                         check=True, capture_output=True, text=True)
    petal_preds = {os.path.abspath(p["image"]): p for p in json.loads(out.stdout)}
    mismatches = 0
    for path in args.images:
        with torch.no_grad():
            logits = model(tf(Image.open(path).convert("RGB")).unsqueeze(0))[0]
        probs = logits.softmax(0)
        top = int(probs.argmax())
        mine = petal_preds[os.path.abspath(path)]
        theirs = torch.tensor(mine["logits"])
        err = float((theirs - logits).abs().max() / logits.abs().max())
        same = mine["top"][0]["index"] == top
        mismatches += not same
        print(f"{path}: pytorch top-1 {top} ({float(probs[top]):.4f}), petal top-1 "
              f"{mine['top'][0]['index']} {mine['top'][0]['label']!r} ({mine['top'][0]['prob']:.4f}), "
              f"max relative logit error {err:.2e}{'' if same else '  <-- DIFFERENT'}")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
