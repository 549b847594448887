#!/usr/bin/env python3
"""onnxruntime side of `petal export --format onnx`: the exported file runs in onnxruntime
and gives **PyTorch's** logits (the fixtures' own, from torchvision's model), for every model
of tests/fixtures/zoo plus the seed's concat-pool head and MobileNetV2.

For each fixture: `petal export --weights <fixture>.pth --format onnx --image-size S` (S the
fixture input's side), `onnx.checker.check_model` (full check, opset 17), onnxruntime on the
fixture's input at its batch size (and one sample alone: the batch axis is dynamic), the
logits compared with the fixture's (max |Δ| / max |ref|) and `probabilities` with their
softmax. Then README's five-line onnxruntime example is run as written on a photo.
Prints one line per model; exits 1 on any failure.

    PETAL_BIN=target/release/petal /tmp/ort/bin/python scripts/check_onnx.py [--weights W.pth]
    (pip install onnxruntime onnx numpy pillow)

`--weights` runs README's example with that file (e.g. torchvision's real ImageNet
`mobilenet_v2-b0353104.pth`: a confident real prediction) instead of the random-weight
MobileNetV2 fixture.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
PETAL = os.environ.get("PETAL_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "petal")
TOL = 1e-4


def f32(path, shape):
    return np.fromfile(path, dtype="<f4").reshape(shape)


def cases():
    zoo = json.load(open(os.path.join(FIXTURES, "zoo", "manifest.json")))
    for m in zoo["models"]:
        d = os.path.join(FIXTURES, "zoo")
        yield (m["name"], os.path.join(d, m["pth"]), os.path.join(d, m["input"]),
               m["input_shape"], os.path.join(d, m["logits"]), m["logits_shape"])
    t = json.load(open(os.path.join(FIXTURES, "manifest.json")))["tensors"]
    for name, inp in [("densenet_tiny_seedhead", "densenet_tiny_input"),
                      ("mobilenet_v2_w025", "mobilenet_v2_w025_input")]:
        out = t[name + "_logits"]
        yield (name, os.path.join(FIXTURES, name + ".pth"), os.path.join(FIXTURES, t[inp]["file"]),
               t[inp]["shape"], os.path.join(FIXTURES, out["file"]), out["shape"])


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main():
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, pth, inp, ishape, logits, lshape in cases():
            out = os.path.join(tmp, name + ".onnx")
            subprocess.run([PETAL, "export", "--weights", pth, "--format", "onnx",
                            "--image-size", str(ishape[-1]), "--out", out],
                           check=True, capture_output=True)
            model = onnx.load(out)
            onnx.checker.check_model(model, full_check=True)
            s = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
            x, want = f32(inp, ishape), f32(logits, lshape)
            got, probs = s.run(["logits", "probabilities"], {"input": x})
            one = s.run(["logits"], {"input": x[:1]})[0]
            err = np.abs(got - want).max() / np.abs(want).max()
            err1 = np.abs(one - want[:1]).max() / np.abs(want).max()
            perr = np.abs(probs - softmax(want)).max()
            ok = err <= TOL and err1 <= TOL and perr <= 1e-5
            failed += not ok
            print(f"{name:24s} nodes {len(model.graph.node):4d}  onnxruntime vs PyTorch: "
                  f"logits {err:.2e} (batch {ishape[0]}), {err1:.2e} (batch 1), "
                  f"probabilities {perr:.2e}  {'ok' if ok else 'FAIL'}")

        # README's example, as written, on a photo: it must name the class petal predicts.
        readme = open(os.path.join(ROOT, "README.md")).read()
        block = re.search(r"```python\n(import json, numpy as np, onnxruntime.*?)```", readme, re.S)
        photo = os.path.join(FIXTURES, "photo.png")
        weights = os.path.join(FIXTURES, "mobilenet_v2_w025.pth")
        if "--weights" in sys.argv:
            weights = sys.argv[sys.argv.index("--weights") + 1]
        onnx_path = os.path.join(tmp, "flowers.onnx")
        subprocess.run([PETAL, "export", "--weights", weights, "--format", "onnx",
                        "--image-size", "224", "--out", onnx_path], check=True, capture_output=True)
        code = block.group(1).replace('"flowers.onnx"', repr(onnx_path)).replace('"rose.jpg"', repr(photo))
        lines = [l for l in code.strip().splitlines() if l.strip()]
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        pred = json.loads(subprocess.run(
            [PETAL, "predict", "--weights", weights, "--device", "cpu", "--json", "--topk", "1", photo],
            check=True, capture_output=True, text=True).stdout)[0]["top"][0]["label"]
        ok = r.returncode == 0 and r.stdout.strip() == pred and len(lines) == 5
        failed += not ok
        print(f"README example ({len(lines)} lines): onnxruntime says {r.stdout.strip()!r}"
              f"{r.stderr.strip()[-300:]}, petal predict says {pred!r}  {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
