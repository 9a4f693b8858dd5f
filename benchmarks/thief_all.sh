#!/usr/bin/env bash
# The thief's test end to end on one machine (made for one GPU, runs anywhere): targets,
# protector recipes side by side, then the thief's matrix for the recipe whose pirate did worst.
#
# Usage: benchmarks/thief_all.sh DATA OUT
#   DATA: train/ and test/ ImageFolders; OUT: where everything is written.
#
# Stages, each with a deadline in seconds after START (so that a run of fixed length, a
# borrowed GPU for example, ends with whatever finished; every stage writes as it goes):
#   1. targets: TARGETS and UNSEEN trained with `invprotect train-targets`, in parallel
#      (deadline T_TARGETS);
#   2. recipes: one `benchmarks/recipe_scan.py` process per recipe of RECIPES (a protector
#      trained for PROTECTOR_SECONDS, then classifiers on protected test images after each of
#      TEST_DEFENCES, then a pirate on the protected training set after each of
#      PIRATE_DEFENCES, SCAN_EPOCHS epochs on TRAIN_IMAGES), and one for the originals
#      (deadline T_RECIPES);
#   3. with MATRIX=1: `benchmarks/thief.py` for the recipe whose pirate (no defence) reached
#      the lowest final accuracy, PIRATE_EPOCHS epochs on every training image (or
#      MATRIX_IMAGES), its rows split over four processes (deadline T_END).
# COMDEFENDS names a folder with comdefend-seen/ (a recipe may train through it) and
# comdefend-unseen/ (the thief's, used only in evaluation).
set -uo pipefail
DATA=$1
OUT=$2
START=${START:-$(date +%s)}
DEVICE=${DEVICE:-cuda}
THREADS=${THREADS:-2}
PY=${PY:-python}
TARGETS=${TARGETS:-resnet_small convnet_small}
UNSEEN=${UNSEEN:-vgg_small}
TARGET_EPOCHS=${TARGET_EPOCHS:-15}
TARGET_IMAGES=${TARGET_IMAGES:-}
RECIPES=${RECIPES:-margin class-consistent}
PROTECTOR_SECONDS=${PROTECTOR_SECONDS:-150}
PROTECTOR_BATCH=${PROTECTOR_BATCH:-64}
PROTECTOR_LR=${PROTECTOR_LR:-5e-4}
TARGET_PSNR=${TARGET_PSNR:-30}
TRAIN_IMAGES=${TRAIN_IMAGES:-50000}
TEST_IMAGES=${TEST_IMAGES:-10000}
PIRATE_EPOCHS=${PIRATE_EPOCHS:-15}
SCAN_EPOCHS=${SCAN_EPOCHS:-$PIRATE_EPOCHS}
PIRATE_DEFENCES=${PIRATE_DEFENCES:-none}
TEST_DEFENCES=${TEST_DEFENCES:-none jpeg:quality=50 jpeg:quality=10 grayscale median_filter resize:scale=0.75 bit_depth:bits=2 comdefend}
COMDEFENDS=${COMDEFENDS:-benchmarks/reference/proxy}
MATRIX=${MATRIX:-1}
MATRIX_ARCHS=${MATRIX_ARCHS:-resnet_small vgg_small}
MATRIX_IMAGES=${MATRIX_IMAGES:-}
MATRIX_TEST_IMAGES=${MATRIX_TEST_IMAGES:-}
T_TARGETS=${T_TARGETS:-1800}
T_RECIPES=${T_RECIPES:-7200}
T_END=${T_END:-36000}
export OMP_NUM_THREADS=$THREADS PYTHONUNBUFFERED=1

PREP=$OUT/prep
mkdir -p "$PREP" "$OUT/logs"
left() { local s=$(( $1 - ($(date +%s) - START) )); echo $(( s > 1 ? s : 1 )); }
note() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/logs/stages.log"; }

note "stage 1: targets ($TARGETS, unseen $UNSEEN), $TARGET_EPOCHS epochs"
cp -r "$COMDEFENDS/comdefend-seen" "$COMDEFENDS/comdefend-unseen" "$PREP/"
subset=()
[ -n "$TARGET_IMAGES" ] && subset=(--max-train-images "$TARGET_IMAGES")
for arch in $TARGETS $UNSEEN; do
  timeout "$(left "$T_TARGETS")" $PY -m invprotect train-targets --data "$DATA" --arch "$arch" \
    --out "$PREP/$arch" --epochs "$TARGET_EPOCHS" "${subset[@]}" --device "$DEVICE" \
    --threads "$THREADS" >"$OUT/logs/target-$arch.log" 2>&1 &
done
wait
for arch in $TARGETS $UNSEEN; do
  note "target $arch: $(tail -n 3 "$OUT/logs/target-$arch.log" | tr '\n' ' ')"
done

note "stage 2: recipes ($RECIPES), protectors trained for $PROTECTOR_SECONDS s each"
scan=(benchmarks/recipe_scan.py --prep "$PREP" --data "$DATA" --out "$OUT/recipes"
  --seconds "$PROTECTOR_SECONDS" --batch-size "$PROTECTOR_BATCH" --lr "$PROTECTOR_LR"
  --target-psnr "$TARGET_PSNR" --train-images "$TRAIN_IMAGES" --test-images "$TEST_IMAGES"
  --epochs "$SCAN_EPOCHS" --pirate-arch resnet_small --targets $TARGETS --unseen $UNSEEN
  --defences $TEST_DEFENCES --pirate-defences $PIRATE_DEFENCES --device "$DEVICE"
  --threads "$THREADS")
timeout "$(left "$T_RECIPES")" $PY "${scan[@]}" >"$OUT/logs/recipe-originals.log" 2>&1 &
for recipe in $RECIPES; do
  timeout "$(left "$T_RECIPES")" $PY "${scan[@]}" --recipes "$recipe" --no-originals \
    >"$OUT/logs/recipe-$recipe.log" 2>&1 &
done
wait
note "recipes done: $(ls "$OUT/recipes" 2>/dev/null | tr '\n' ' ')"
[ "$MATRIX" = 1 ] || exit 0

chosen=$($PY - "$OUT/recipes" "$TARGET_PSNR" <<'EOF'
import json, sys
from pathlib import Path
# Lowest pirate accuracy among recipes within 0.5 dB of the wanted PSNR; else the best PSNR.
tries = []
for path in Path(sys.argv[1]).glob("*.json"):
    result = json.loads(path.read_text())
    if "recipe" in result and "none" in result["pirate"]:
        psnr, final = result["quality"]["psnr"], result["pirate"]["none"][-1]
        tries.append((psnr < float(sys.argv[2]) - 0.5, final, -psnr, path.stem + "-protector"))
print(min(tries)[3] if tries else "")
EOF
)
if [ -z "$chosen" ]; then
  note "no recipe finished its pirate: no matrix"
  exit 1
fi
note "stage 3: the matrix for $chosen"
matrix=(benchmarks/thief.py --protector "$OUT/recipes/$chosen" --data "$DATA"
  --comdefend "$PREP/comdefend-unseen" --archs $MATRIX_ARCHS --epochs "$PIRATE_EPOCHS"
  --device "$DEVICE" --protect-device "$DEVICE" --threads "$THREADS" --out "$OUT/thief")
[ -n "$MATRIX_IMAGES" ] && matrix+=(--train-images "$MATRIX_IMAGES")
[ -n "$MATRIX_TEST_IMAGES" ] && matrix+=(--test-images "$MATRIX_TEST_IMAGES")
timeout "$(left "$T_END")" $PY "${matrix[@]}" --rows none originals key-holder \
  >"$OUT/logs/thief-1.log" 2>&1 &
while [ ! -f "$OUT/thief/protected/config.json" ] && [ "$(left "$T_END")" -gt 1 ]; do sleep 2; done
n=2
for rows in "jpeg10 comdefend jpeg50" "grayscale median3 resize0.75 bitdepth2" \
  "learned-inverse adversarial"; do
  # shellcheck disable=SC2086
  timeout "$(left "$T_END")" $PY "${matrix[@]}" --rows $rows >"$OUT/logs/thief-$n.log" 2>&1 &
  n=$((n + 1))
done
wait
note "matrix cells: $(ls "$OUT/thief/cells" 2>/dev/null | tr '\n' ' ')"
