#!/usr/bin/env bash
# Full-size parity of the model zoo (not part of CI: the files are ~1 GB): one torchvision
# preset per family — resnet50, efficientnet_b0, convnext_tiny, mobilenet_v3_large — and
# timm's resnet50 / efficientnet_b0 / convnext_tiny (timm's key names; needs `pip install
# timm`), with random weights and non-trivial normalisation statistics, written by
# scripts/make_zoo_fixtures.py --full, then read by petal with --arch auto from .pth and
# .safetensors; features and logits must match PyTorch's to 1e-4 relative (the same tests
# as the committed tiny fixtures, pointed at the full-size files with PETAL_ZOO_DIR).
#
#   scripts/check-zoo-full.sh [OUT_DIR] [--wgpu]
#
# Needs PyTorch + torchvision + safetensors (PYTHON=/path/to/venv/bin/python) and a release
# build; --wgpu also runs the wgpu (lavapipe on a CPU machine: minutes) comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=/tmp/petal-zoo-full
WGPU=0
for a in "$@"; do
  case "$a" in
    --wgpu) WGPU=1 ;;
    *) OUT=$a ;;
  esac
done
"$PY" scripts/make_zoo_fixtures.py --full --out "$OUT"
tests=(zoo::every_family_matches_pytorch_from_pth_flex
       zoo::every_family_matches_pytorch_from_safetensors_flex
       zoo::inferred_configuration_counts_the_parameters_pytorch_counts)
[ "$WGPU" = 1 ] && tests+=(zoo::every_family_matches_pytorch_wgpu)
PETAL_ZOO_DIR="$OUT" cargo test --release --test it -- --exact --nocapture --test-threads 1 "${tests[@]}"
