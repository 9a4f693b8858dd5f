#!/usr/bin/env bash
# L2 (PSNR) against L-inf poisons at the thief's CPU proxy, with JPEG 10 and ComDefend.
#   bash benchmarks/poison_budget_proxy.sh DATA OUT [NAME...]   (NAME: l2, linf; default both)
# For each poison: `protect --poison-steps 20` against both targets, each image pushed from its
# label, crafted once on two threads (the cell with no defence saves the pixels), then the
# pirates after JPEG 10 and after the thief's ComDefend (`comdefend-unseen`), one thread each,
# side by side. resnet_small, 6 epochs on the proxy's seeded 10,000 training images, 2,000 test
# images: the figures beside poison_proxy.sh's (docs/results.md, try 10).
set -u
DATA=$1 R=$2; shift 2
NAMES=${*:-l2 linf}
K=benchmarks/reference/cifar10-h200
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
    *) echo "unknown poison $name" >&2; exit 2 ;;
  esac
  POISON="$POISON --targets $K/resnet_small $K/convnet_small"
  cell $name-none 2 $POISON --save-pixels $R/pixels/$name
  cell $name-jpeg10 1 $POISON --pixels $R/pixels/$name --defence jpeg:quality=10 &
  cell $name-comdefend 1 $POISON --pixels $R/pixels/$name \
    --defence comdefend:weights=benchmarks/reference/proxy/comdefend-unseen &
  wait
done
for f in $R/cells/*.json; do
  echo "$f $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['accuracy'], d['wall_s'])" $f)"
done
