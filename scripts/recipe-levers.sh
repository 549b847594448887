#!/usr/bin/env bash
# Issue 14's lever table: each recipe lever on top of the same base run, several seeds, on a
# real photo set; prints final and best valid top-1 per seed and the mean (one JSON line per
# run into $OUT/levers.jsonl, and a Markdown table on stdout).
#
# Usage: scripts/recipe-levers.sh DATA WEIGHTS [SEEDS...]
#   DATA    an ImageFolder (e.g. from scripts/endless_sky_to_imagefolder.py)
#   WEIGHTS a torchvision checkpoint (e.g. mobilenet_v2-b0353104.pth)
# Env: PETAL_BIN (default: this checkout's release binary), OUT (default /tmp/levers),
#      BASE (the base flags), LEVERS (newline-separated "name|flags" lines).
set -euo pipefail
DATA=$1
WEIGHTS=$2
shift 2
SEEDS=${*:-1 2 3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PETAL_BIN=${PETAL_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/petal}
OUT=${OUT:-/tmp/levers}
BASE=${BASE:---image-size 128 --max-shorter-side 146 --batch-size 16 --freeze-epochs 2 --epochs 6 --device cpu --cache ram}
LEVERS=${LEVERS:-"base|
ema 0.99|--ema 0.99
label smoothing 0.1|--label-smoothing 0.1
mixup 0.2|--mixup 0.2
cutmix 1.0|--cutmix 1.0
mixup 0.2 + cutmix 1.0|--mixup 0.2 --cutmix 1.0
balanced sampler|--sampler balanced"}
mkdir -p "$OUT"
: > "$OUT/levers.jsonl"
echo "== $(date -u +%FT%TZ) $(git -C "$ROOT" rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "| lever | flags | final top-1 per seed ($SEEDS) | mean final | mean best | time/run |"
echo "|---|---|---|---|---|---|"
while IFS='|' read -r name flags; do
  finals=(); bests=(); t0=$(date +%s)
  for seed in $SEEDS; do
    run="$OUT/$(echo "$name" | tr ' .+' '___')-s$seed"
    rm -rf "$run"
    # shellcheck disable=SC2086
    "$PETAL_BIN" train --data "$DATA" --weights "$WEIGHTS" $BASE $flags --seed "$seed" \
      --out "$run" > "$run.log" 2>&1 || { echo "run $run failed (see $run.log)" >&2; exit 1; }
    read -r final best < <(python3 - "$run/metrics.jsonl" <<'EOF'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
print(m[-1]["valid_top1"], max(r["valid_top1"] for r in m))
EOF
)
    finals+=("$final"); bests+=("$best")
    echo "{\"lever\": \"$name\", \"flags\": \"$flags\", \"seed\": $seed, \"final_top1\": $final, \"best_top1\": $best}" >> "$OUT/levers.jsonl"
  done
  t=$(( ($(date +%s) - t0) / $(echo $SEEDS | wc -w) ))
  python3 - "$name" "$flags" "$t" "${finals[*]}" "${bests[*]}" <<'EOF'
import sys
name, flags, t, finals, bests = sys.argv[1:]
f = [float(x) for x in finals.split()]
b = [float(x) for x in bests.split()]
per = " / ".join(f"{100 * x:.1f}" for x in f)
print(f"| {name} | `{flags}` | {per} | **{100 * sum(f) / len(f):.1f} %** | {100 * sum(b) / len(b):.1f} % | {t} s |")
EOF
done <<< "$LEVERS"
