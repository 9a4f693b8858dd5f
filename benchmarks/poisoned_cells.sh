#!/usr/bin/env bash
# The thief's cells for the reference key with the targeted poison on top, all at once on one GPU:
#   bash benchmarks/poisoned_cells.sh DATA OUT    (DATA: CIFAR-10 train/ and test/; OUT: cells/, logs/)
# The first cell protects and poisons the 50,000 training images and keeps them; the others
# start from those. DEVICE (cuda), DEADLINE (185 s), STEPS (20) and EXTRA may be set.
set -u
DATA=$1 R=$2
T0=$(date +%s)
DEADLINE=${DEADLINE:-185}
DEVICE=${DEVICE:-cuda}
K=benchmarks/reference/cifar10-h200
mkdir -p $R/cells $R/logs
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
cell() {  # name pirate_cell-options...
  local name=$1; shift
  OMP_NUM_THREADS=1 timeout $(left) python3 benchmarks/pirate_cell.py --protector $K/protector \
    --data $DATA --device $DEVICE --threads 1 --out $R/cells/$name.json ${EXTRA:-} "$@" \
    > $R/logs/$name.log 2>&1 &
}
cell none--resnet_small --arch resnet_small --poison-steps ${STEPS:-20} \
  --targets $K/resnet_small $K/convnet_small --save-pixels $R/pixels
while [ ! -f $R/pixels/config.json ] && [ $(left) -gt 0 ]; do sleep 2; done
echo "[$(( $(date +%s) - T0 )) s] protected and poisoned"
CD=comdefend:weights=benchmarks/reference/proxy/comdefend-unseen
for c in "jpeg50 jpeg:quality=50 resnet_small" "jpeg10 jpeg:quality=10 resnet_small" \
         "grayscale grayscale resnet_small" "comdefend $CD resnet_small" \
         "none none vgg_small" "jpeg10 jpeg:quality=10 vgg_small"; do
  set -- $c
  cell $1--$3 --pixels $R/pixels --defence $2 --arch $3
done
while [ -n "$(jobs -rp)" ]; do sleep 10; echo "[$(( $(date +%s) - T0 )) s] $(ls $R/cells | wc -l) cells done"; done
for f in $R/logs/*.log; do echo "== $f"; tail -n 1 $f | cut -c 1-400; done
cp $R/pixels/config.json $R/logs/pixels-config.json 2>/dev/null
