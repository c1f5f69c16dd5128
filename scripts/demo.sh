#!/usr/bin/env bash
# The demo, end to end on a generated CASME II look-alike dataset: synth -> manifest ->
# dynamic-image cache -> cross-validated LEARNet in the four configurations -> the same
# model on the apex frame alone (the motion-free control) -> the report.
# Usage: bash scripts/demo.sh [OUT_DIR]   (default: demo_out/, replaced on every run)
# EPOCHS=30 by default (the paper trains up to 50; 30 keeps the demo under 10 minutes on
# 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
source scripts/venv.sh ""  # explicit: a sourced script would otherwise see our $1 (OUT_DIR)
OUT="${1:-demo_out}"
EPOCHS="${EPOCHS:-30}"
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. a look-alike CASME II dataset in the official layout"
mer-prep synth --dataset casme2 --out "$OUT/casme2" --subjects 6 --clips-per-class 2 --seed 0

echo
echo "== 2. its manifest, read from the generated annotation sheet"
mer-prep manifest --dataset casme2 --root "$OUT/casme2" --out "$OUT/casme2_manifest.csv"

echo
echo "== 3. the dynamic-image cache: full, onset and offset images of every clip"
# 112x112: LEARNet's input size (the default, 224, suits the 224-input backbones)
mer-prep build-cache --dataset casme2 --root "$OUT/casme2" --out "$OUT/casme2.h5" --size 112
mer-prep inspect --cache "$OUT/casme2.h5"

echo
echo "== 4. one clip's images beside its onset, apex and offset frames"
CLIP=$(python -c "import csv,sys; f=open(sys.argv[1]); r=[x for x in csv.DictReader(f) if not x['quirk']][0]; f.close(); print(r['subject']+'/'+r['clip'])" "$OUT/casme2/synth_ground_truth.csv")
mer-prep show --cache "$OUT/casme2.h5" "$CLIP" --out "$OUT/clip.png"

echo
echo "== 5. LEARNet, subject-kfold (5 folds, no subject in two folds), the four configurations"
mer-train cv --cache "$OUT/casme2.h5" --model learnet --protocol subject-kfold \
    --epochs "$EPOCHS" --no-checkpoints --out "$OUT/runs/learnet"

echo
echo "== 6. the control: the same model and folds on each clip's apex frame alone"
mer-train cv --cache "$OUT/casme2.h5" --model learnet --protocol subject-kfold \
    --config baseline --config fliprot --input apex \
    --epochs "$EPOCHS" --no-checkpoints --out "$OUT/runs/learnet_apex"

echo
echo "== 7. the report: Table I layout, each configuration against baseline, figures"
mer-train report "$OUT/runs/learnet" "$OUT/runs/learnet_apex" --out "$OUT/report"

echo
echo "demo finished in $((SECONDS - START)) s; everything is under $OUT/"
