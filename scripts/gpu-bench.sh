#!/usr/bin/env bash
# Real-GPU benchmark: petal on Vulkan (bench pool, bench augment, bench train-step f32 and
# f16) and the same step in PyTorch on CUDA, side by side, written as ONE JSON file.
# Needs: Linux, an NVIDIA GPU with its driver, Python with torch + torchvision (CUDA), and
# a prebuilt petal release binary — no Rust toolchain.
#
# Usage: PETAL_BIN=/path/to/petal[.zst] scripts/gpu-bench.sh [OUT.json]
# Env:
#   PETAL_BIN      the petal binary (`cargo build --profile dist -p petal-cli`: target/dist/petal); a .zst file is unpacked
#                  (with `zstd`, or Python's `zstandard` / `compression.zstd`).
#   VULKAN_LIB     a libvulkan.so.1 to use when the machine has no Vulkan loader.
#   PYTHON         Python with torch/torchvision (default python3).
#   PETAL_DEVICE   petal's device (default vulkan), TORCH_DEVICE (default cuda).
#   ARCH SIZE BATCH      train-step shape (default densenet161 224 64).
#   AUG_BATCH AUG_SIZE   bench augment shape (default 64 224).
#   RUNS WARMUP          timed / warm-up steps (default 10 / 3), POOL_RUNS (default 20).
#   PRECISIONS     petal precisions (default "f32 f16 mixed"); TORCH_MODES (default
#                  "f32 f32-notf32 f16": PyTorch's TF32 defaults, TF32 off, AMP f16).
#   STEP_TIMEOUT   seconds per command (default 1800).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-${OUT:-gpu-bench-$(date +%Y%m%d-%H%M%S).json}}
: "${PETAL_BIN:?set PETAL_BIN to a prebuilt petal binary}"
PYTHON=${PYTHON:-python3}
PETAL_DEVICE=${PETAL_DEVICE:-vulkan}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
ARCH=${ARCH:-densenet161}
SIZE=${SIZE:-224}
BATCH=${BATCH:-64}
AUG_BATCH=${AUG_BATCH:-64}
AUG_SIZE=${AUG_SIZE:-224}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-3}
POOL_RUNS=${POOL_RUNS:-20}
PRECISIONS=${PRECISIONS:-f32 f16 mixed}
TORCH_MODES=${TORCH_MODES:-f32 f32-notf32 f16}
STEP_TIMEOUT=${STEP_TIMEOUT:-1800}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The binary: unpack a .zst.
BIN=$PETAL_BIN
if [[ $PETAL_BIN == *.zst ]]; then
    BIN=$WORK/petal
    if command -v zstd >/dev/null; then
        zstd -q -d -o "$BIN" "$PETAL_BIN"
    else
        "$PYTHON" - "$PETAL_BIN" "$BIN" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
try:
    from compression import zstd  # Python 3.14+
    data = zstd.decompress(open(src, "rb").read())
except ImportError:
    import zstandard
    data = zstandard.ZstdDecompressor().stream_reader(open(src, "rb")).read()
open(dst, "wb").write(data)
PY
    fi
    chmod +x "$BIN"
fi

# The Vulkan loader, if the machine lacks one.
if [ -n "${VULKAN_LIB:-}" ]; then
    mkdir -p "$WORK/lib"
    ln -sf "$(realpath "$VULKAN_LIB")" "$WORK/lib/libvulkan.so.1"
    export LD_LIBRARY_PATH="$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# NVIDIA's Vulkan driver (ICD) is libGLX_nvidia.so.0; containers started without the
# `graphics` driver capability often lack its manifest: write one when the library exists.
if [ -z "${VK_ICD_FILENAMES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json >/dev/null 2>&1; then
    glx=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0/ {print $NF; exit}')
    if [ -n "$glx" ]; then
        cat >"$WORK/nvidia_icd.json" <<JSON
{"file_format_version": "1.0.0", "ICD": {"library_path": "$glx", "api_version": "1.3"}}
JSON
        export VK_ICD_FILENAMES=$WORK/nvidia_icd.json
        echo "wrote an NVIDIA Vulkan ICD manifest for $glx" >&2
    fi
fi

# run NAME CMD…: stdout (JSON) to $WORK/NAME.json, stderr to NAME.log, never aborts.
run() {
    local name=$1
    shift
    echo "-- $name: $*" >&2
    local t0=$SECONDS
    timeout "$STEP_TIMEOUT" "$@" >"$WORK/$name.json" 2>"$WORK/$name.log"
    local rc=$?
    echo "$rc $((SECONDS - t0))" >"$WORK/$name.rc"
    [ $rc -eq 0 ] || { echo "   failed (rc $rc):" >&2; tail -5 "$WORK/$name.log" >&2; }
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
    echo "no nvidia-smi"; } >"$WORK/gpu.txt"
"$BIN" info >"$WORK/petal-info.txt" 2>&1 || true
ls -l "$PETAL_BIN" >"$WORK/bin.txt"

run petal-pool "$BIN" bench pool --device "$PETAL_DEVICE" --runs "$POOL_RUNS" --json
run petal-augment "$BIN" bench augment --device "$PETAL_DEVICE" --batch-size "$AUG_BATCH" \
    --size "$AUG_SIZE" --json
run petal-augment-mixed "$BIN" bench augment --device "$PETAL_DEVICE" --batch-size "$AUG_BATCH" \
    --size "$AUG_SIZE" --mixup 0.2 --cutmix 1.0 --json
for p in $PRECISIONS; do
    # f32 also alternates with Burn's BatchNorm (petal's WGSL BatchNorm kernels are f32):
    # step time and dispatches per step, both ways, from the same run.
    compare=()
    [ "$p" = f32 ] && compare=(--compare-conv)
    run "petal-train-step-$p" "$BIN" bench train-step --arch "$ARCH" --image-size "$SIZE" \
        --batch "$BATCH" --precision "$p" --device "$PETAL_DEVICE" --runs "$RUNS" \
        --warmup "$WARMUP" --breakdown "${compare[@]}" --json
done
# The device-resident data path: the f32 step with the images on the device (a step uploads
# only its augmentation parameters), against the f32 run above (the packed images uploaded).
run petal-train-step-f32-cache-device "$BIN" bench train-step --arch "$ARCH" --image-size "$SIZE" \
    --batch "$BATCH" --precision f32 --device "$PETAL_DEVICE" --runs "$RUNS" \
    --warmup "$WARMUP" --cache device --json
for m in $TORCH_MODES; do
    case $m in
        f32) extra=(--precision f32 --tf32 default) ;;
        f32-notf32) extra=(--precision f32 --tf32 off) ;;
        f32-tf32) extra=(--precision f32 --tf32 on) ;;
        f16) extra=(--precision f16) ;;
        *) echo "unknown TORCH_MODES entry $m" >&2; continue ;;
    esac
    run "pytorch-$m" "$PYTHON" "$ROOT/benches/pytorch/train_step.py" --arch "$ARCH" \
        --image-size "$SIZE" --batch "$BATCH" --device "$TORCH_DEVICE" --runs "$RUNS" \
        --warmup "$WARMUP" "${extra[@]}" --json
done

"$PYTHON" - "$WORK" "$OUT" <<'PY'
import glob, json, os, sys, datetime, platform
work, out = sys.argv[1], sys.argv[2]
res = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
       "host": platform.node(), "load": open("/proc/loadavg").read().split()[:3],
       "gpu": open(os.path.join(work, "gpu.txt")).read().strip(),
       "petal_info": open(os.path.join(work, "petal-info.txt")).read(),
       "petal_bin": open(os.path.join(work, "bin.txt")).read().strip(),
       "env": {k: os.environ.get(k) for k in
               ["ARCH", "SIZE", "BATCH", "PETAL_DEVICE", "TORCH_DEVICE", "RUNS", "WARMUP"]},
       "results": {}, "ratios": {}}
for rc_file in sorted(glob.glob(os.path.join(work, "*.rc"))):
    name = os.path.basename(rc_file)[:-3]
    rc, secs = map(int, open(rc_file).read().split())
    entry = {"rc": rc, "wall_s": secs}
    try:
        entry["result"] = json.load(open(os.path.join(work, name + ".json")))
    except Exception:
        entry["log_tail"] = open(os.path.join(work, name + ".log")).read()[-3000:]
    res["results"][name] = entry
def ips(name):
    r = res["results"].get(name, {}).get("result")
    return r and r.get("ips"), r and r.get("peak_mem_bytes")
for p in ["f32", "f16", "mixed"]:
    for m in ["f32", "f32-notf32", "f32-tf32", "f16"]:
        (a, am), (b, bm) = ips(f"petal-train-step-{p}"), ips(f"pytorch-{m}")
        if a and b:
            res["ratios"][f"petal-{p}/pytorch-{m}"] = {
                "ips": a / b, "peak_mem": (am / bm) if am and bm else None}
json.dump(res, open(out, "w"), indent=2)
print(f"wrote {out}")
for k, v in res["ratios"].items():
    pm = "n/a" if v["peak_mem"] is None else f"{v['peak_mem']:.3f}x"
    print(f"  {k:<34} images/s {v['ips']:.3f}x   peak memory {pm}")
for k, v in res["results"].items():
    if v["rc"] != 0:
        print(f"  {k}: FAILED rc {v['rc']}")
PY
