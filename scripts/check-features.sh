#!/usr/bin/env bash
# README's two commands must share one build: `cargo run --example densenet_flowers` builds the
# root package `petal`, `cargo test --workspace` every member. Cargo resolves features per
# command, so a dependency that turns on a feature in one of them only (e.g. ctrlc → libc's
# `extra_traits`) makes the other rebuild everything above that crate — Burn included.
# This compares the features of every package the two resolutions share; exit 1 on a mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
tree() {
    cargo tree "$@" -e normal,dev,build -f '{p} {f}' --prefix none --locked | sed 's/ (\*)$//' | sort -u
}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
tree -p petal >"$dir/example"
tree --workspace >"$dir/workspace"
packages() { awk '{print $1" "$2}' "$1" | sort -u; }
comm -12 <(packages "$dir/example") <(packages "$dir/workspace") >"$dir/shared"
shared_lines() { awk 'NR == FNR { s[$0] = 1; next } ($1" "$2) in s' "$dir/shared" "$1"; }
if ! diff <(shared_lines "$dir/example") <(shared_lines "$dir/workspace") >"$dir/diff"; then
    echo "check-features: the example (-p petal) and the workspace resolve different features"
    echo "(< example, > workspace); give the root package the same dependencies/features:"
    cat "$dir/diff"
    exit 1
fi
echo "check-features: $(wc -l <"$dir/shared") shared packages resolve identical features"
