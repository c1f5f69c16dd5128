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

echo
echo "== 3. the dynamic-image cache: full, onset and offset images of every clip"
mer-prep build-cache --dataset casme2 --root "$OUT/casme2" --out "$OUT/casme2.h5"
mer-prep inspect "$OUT/casme2.h5"

echo
echo "== 4. one clip's images beside its onset, apex and offset frames"
CLIP=$(python -c "import csv,sys; r=[x for x in csv.DictReader(open(sys.argv[1])) if not x['quirk']][0]; print(r['subject']+'/'+r['clip'])" "$OUT/casme2/synth_ground_truth.csv")
mer-prep show "$OUT/casme2.h5" "$CLIP" --out "$OUT/clip.png"
