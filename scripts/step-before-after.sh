#!/usr/bin/env bash
# Before/after train-step time of two petal binaries, measured in one run: the two
# alternate round by round (so machine load drifts hit both alike), each round one
# `petal bench train-step` process; prints every round and the medians.
#
#   scripts/step-before-after.sh OLD_BIN NEW_BIN [ROUNDS] [bench train-step flags…]
#   default flags: --arch densenet121 --batch 8 --image-size 64 --device cpu --runs 5 --warmup 2
set -euo pipefail
old=$1 new=$2 rounds=${3:-6}
shift $(($# < 3 ? $# : 3))
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--arch densenet121 --batch 8 --image-size 64 --device cpu --runs 5 --warmup 2)
step_ms() { "$1" bench train-step "${flags[@]}" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["step_ms"])'; }
echo "flags: ${flags[*]}"
o=() n=()
for r in $(seq "$rounds"); do
    a=$(step_ms "$old") b=$(step_ms "$new")
    o+=("$a") n+=("$b")
    printf 'round %d: before %.1f ms, after %.1f ms\n' "$r" "$a" "$b"
done
python3 - "${o[*]}" "${n[*]}" <<'PY'
import statistics, sys
o = [float(x) for x in sys.argv[1].split()]
n = [float(x) for x in sys.argv[2].split()]
mo, mn = statistics.median(o), statistics.median(n)
print(f"median step: before {mo:.1f} ms, after {mn:.1f} ms, after/before {mn / mo:.3f}")
PY
