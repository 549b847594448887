#!/usr/bin/env python3
"""petal vs PyTorch on the CPU, interleaved: ROUNDS rounds, each one PyTorch process
(benches/pytorch/train_step.py) then one petal process (`bench train-step --compare-conv`:
petal's CPU kernels and, alternating step by step in the same process, Burn's own
convolutions and BatchNorm). A round's ratio pairs two runs a few seconds apart, so the
machine's drift in speed (large on a shared VM) hits both sides; the median over rounds
is reported.

Usage: scripts/compare_rounds.py ARCH SIZE [BATCH] [ROUNDS]
Env: PETAL_BIN (default: $CARGO_TARGET_DIR/release/petal), PYTHON (a Python with torch +
     torchvision; default python3), RUNS / WARMUP per process (default 5 / 1), OUT (also
     write every result as JSON), PETAL_BEFORE (an older petal binary: each round also
     runs it, right after the current one, for a before/after from the same rounds),
     STOCK=0 (leave out `--compare-conv`, the step with Burn's conv/BatchNorm).
"""
import json
import os
import statistics
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
arch, size = sys.argv[1], sys.argv[2]
batch = sys.argv[3] if len(sys.argv) > 3 else "8"
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
petal = os.environ.get("PETAL_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "petal")
python = os.environ.get("PYTHON", "python3")
runs, warmup = os.environ.get("RUNS", "5"), os.environ.get("WARMUP", "1")
before = os.environ.get("PETAL_BEFORE")
stock = os.environ.get("STOCK", "1") != "0"
common = ["--arch", arch, "--image-size", size, "--batch", batch, "--runs", runs,
          "--warmup", warmup, "--json"]


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):])


results = []
print(f"{arch} {size}² batch {batch}: {rounds} rounds of {runs} steps (after {warmup})",
      file=sys.stderr)
for r in range(rounds):
    pt = run([python, os.path.join(root, "benches/pytorch/train_step.py"), "--device", "cpu",
              *common])
    flags = ["--compare-conv"] if stock else []
    pe = run([petal, "bench", "train-step", "--device", "cpu", *flags, *common])
    row = {"pytorch_ms": pt["step_ms"], "petal_ms": pe["step_ms"],
           "ratio": pt["step_ms"] / pe["step_ms"],
           "pytorch_peak": pt["peak_mem_bytes"], "petal_peak": pe["peak_mem_bytes"]}
    line = (f"  round {r + 1}: PyTorch {row['pytorch_ms']:.1f} ms, petal {row['petal_ms']:.1f} ms "
            f"({row['ratio']:.3f}x)")
    if stock:
        row["petal_stock_ms"] = pe["step_ms_stock_conv"]
        row["ratio_stock"] = pt["step_ms"] / pe["step_ms_stock_conv"]
        line += (f", petal with Burn's conv/BatchNorm {row['petal_stock_ms']:.1f} ms "
                 f"({row['ratio_stock']:.3f}x)")
    if before:
        pb = run([before, "bench", "train-step", "--device", "cpu", *common])
        row["petal_before_ms"] = pb["step_ms"]
        row["ratio_before"] = pt["step_ms"] / pb["step_ms"]
        line += f", petal before {row['petal_before_ms']:.1f} ms ({row['ratio_before']:.3f}x)"
    results.append({"pytorch": pt, "petal": pe, **row})
    print(line, file=sys.stderr)
keys = [k for k in ("pytorch_ms", "petal_ms", "petal_stock_ms", "petal_before_ms", "ratio",
                    "ratio_stock", "ratio_before") if k in results[0]]
med = {k: statistics.median(x[k] for x in results) for k in keys}
print(json.dumps({"arch": arch, "size": int(size), "batch": int(batch), "rounds": rounds,
                  "runs": int(runs), "warmup": int(warmup), "median": med}, indent=2))
if os.environ.get("OUT"):
    with open(os.environ["OUT"], "w") as f:
        json.dump(results, f, indent=2)
