#!/usr/bin/env bash
# The demo, end to end on a generated CASME II look-alike dataset.
# Usage: bash scripts/demo.sh [OUT_DIR]   (default: demo_out/, replaced on every run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
OUT="${1:-demo_out}"
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. a look-alike CASME II dataset in the official layout"
mer-prep synth --dataset casme2 --out "$OUT/casme2" --subjects 6 --clips-per-class 2 --seed 0

echo
echo "== 2. its manifest, read from the generated annotation sheet"
mer-prep manifest --dataset casme2 --root "$OUT/casme2" --out "$OUT/casme2_manifest.csv"
