#!/usr/bin/env bash
# L2 (PSNR) against L-inf poisons at the thief's CPU proxy, with JPEG 10 and ComDefend.
#   bash benchmarks/poison_budget_proxy.sh DATA OUT [NAME...]  (l2, linf, l2-through, originals)
# For each poison: `protect --poison-steps 20` against both targets (l2-through: 10 steps, each
# also through Kornia's JPEG 10, grayscale and the recipes' `comdefend-seen`), each image pushed
# from its label, crafted once on two threads (the cell with no defence saves the pixels), then the
# pirates after JPEG 10 and after the thief's ComDefend (`comdefend-unseen`), one thread each,
# side by side. resnet_small, 6 epochs on the proxy's seeded 10,000 training images, 2,000 test
# images: the figures beside poison_proxy.sh's (docs/results.md, try 10). `originals`: the
# originals' pirates after the same two defences, the reference of each row.
set -u
DATA=$1 R=$2; shift 2
NAMES=${*:-l2 linf}
K=benchmarks/reference/cifar10-h200
SEEN=benchmarks/reference/proxy/comdefend-seen
mkdir -p $R/cells $R/logs $R/pixels
cell() {  # name threads pirate_cell-options...
  local name=$1 threads=$2; shift 2
  OMP_NUM_THREADS=$threads python3 benchmarks/pirate_cell.py --protector $K/protector \
    --data $DATA --train-images 10000 --test-images 2000 --epochs 6 --threads $threads \
    --device cpu --out $R/cells/$name.json "$@" > $R/logs/$name.log 2>&1
}
for name in $NAMES; do
  case $name in
    l2) POISON="--poison-steps 20 --poison-psnr 32.25" ;;
    linf) POISON="--poison-steps 20" ;;
    l2-through) POISON="--poison-steps 10 --poison-psnr 32.25 --poison-through jpeg:quality=10
      --poison-through grayscale --poison-through comdefend:weights=$SEEN" ;;
    originals) POISON="--images originals" ;;  # the reference (no defence: poison_proxy.sh)
    *) echo "unknown poison $name" >&2; exit 2 ;;
  esac
  SET=$POISON
  if [ $name != originals ]; then
    POISON="$POISON --targets $K/resnet_small $K/convnet_small"
    cell $name-none 2 $POISON --save-pixels $R/pixels/$name
    SET="$POISON --pixels $R/pixels/$name"
  fi
  cell $name-jpeg10 1 $SET --defence jpeg:quality=10 &
  cell $name-comdefend 1 $SET \
    --defence comdefend:weights=benchmarks/reference/proxy/comdefend-unseen &  # not $SEEN
  wait
done
for f in $R/cells/*.json; do
  echo "$f $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['accuracy'], d['wall_s'])" $f)"
done
