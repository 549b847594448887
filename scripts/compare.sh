#!/usr/bin/env bash
# petal vs PyTorch: the same fine-tune step (bench train-step / benches/pytorch/train_step.py)
# on this machine, in one go; prints petal/PyTorch ratios (images/s, > 1 = petal faster;
# and peak memory, < 1 = petal smaller).
#
# Usage: scripts/compare.sh [ARCH] [SIZE] [BATCH]
# Env: PETAL_BIN (default: the release binary of this checkout), PYTHON (a Python with
#      torch + torchvision), DEVICES (petal devices, default "cpu wgpu"), TORCH_DEVICE
#      (default cpu), RUNS / WARMUP (petal and PyTorch, default 3 / 1), WGPU_RUNS /
#      WGPU_WARMUP (for petal on wgpu, default RUNS / WARMUP: lavapipe is slow),
#      OUT (also write all results as one JSON file).
set -euo pipefail
ARCH=${1:-densenet121}
SIZE=${2:-224}
BATCH=${3:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PETAL_BIN=${PETAL_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/petal}
PYTHON=${PYTHON:-python3}
DEVICES=${DEVICES:-cpu wgpu}
TORCH_DEVICE=${TORCH_DEVICE:-cpu}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}
WGPU_RUNS=${WGPU_RUNS:-$RUNS}
WGPU_WARMUP=${WGPU_WARMUP:-$WARMUP}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "== $ARCH ${SIZE}² batch $BATCH; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "-- PyTorch ($TORCH_DEVICE)" >&2
"$PYTHON" "$ROOT/benches/pytorch/train_step.py" --arch "$ARCH" --image-size "$SIZE" \
    --batch "$BATCH" --device "$TORCH_DEVICE" --runs "$RUNS" --warmup "$WARMUP" --json \
    >"$TMP/pytorch.json"
for d in $DEVICES; do
    r=$RUNS w=$WARMUP
    if [ "$d" != cpu ]; then r=$WGPU_RUNS w=$WGPU_WARMUP; fi
    echo "-- petal ($d, $r runs after $w warm-up)" >&2
    "$PETAL_BIN" bench train-step --arch "$ARCH" --image-size "$SIZE" --batch "$BATCH" \
        --device "$d" --runs "$r" --warmup "$w" --json >"$TMP/petal-$d.json"
done

"$PYTHON" - "$TMP" "$DEVICES" "${OUT:-}" <<'PY'
import json, sys, os
tmp, devices, out = sys.argv[1], sys.argv[2].split(), sys.argv[3]
pt = json.load(open(os.path.join(tmp, "pytorch.json")))
res = {"pytorch": pt, "petal": {}, "ratios": {}}
def mib(b):
    return "n/a" if b is None else f"{b / 2**20:.0f} MiB"
print(f"{'engine':<34} {'step ms':>10} {'images/s':>10} {'peak mem':>10}  ips ratio  mem ratio")
print(f"{'pytorch ' + pt['device']:<34} {pt['step_ms']:>10.1f} {pt['ips']:>10.2f} {mib(pt['peak_mem_bytes']):>10}")
for d in devices:
    p = json.load(open(os.path.join(tmp, f"petal-{d}.json")))
    res["petal"][d] = p
    ips_ratio = p["ips"] / pt["ips"]
    mem_ratio = (p["peak_mem_bytes"] / pt["peak_mem_bytes"]
                 if p["peak_mem_bytes"] and pt["peak_mem_bytes"] else None)
    res["ratios"][d] = {"ips": ips_ratio, "peak_mem": mem_ratio}
    name = "petal " + p["device"]
    print(f"{name[:34]:<34} {p['step_ms']:>10.1f} {p['ips']:>10.2f} {mib(p['peak_mem_bytes']):>10}"
          f"  {ips_ratio:>8.3f}x  " + ("n/a" if mem_ratio is None else f"{mem_ratio:.3f}x"))
if out:
    json.dump(res, open(out, "w"), indent=2)
    print(f"wrote {out}")
PY
