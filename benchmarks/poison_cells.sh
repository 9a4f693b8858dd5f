#!/usr/bin/env bash
# Try 8 of the thief's test: per-image targeted poisons (plain and squeeze-aware), then pirates:
#   bash benchmarks/poison_cells.sh DATA OUT    (DATA: CIFAR-10 train/ and test/; OUT: sets/, cells/, logs/)
# DEVICE (cuda), DEADLINE (500), STEPS (40), EXTRA_CRAFT and EXTRA_CELL (more options of
# poison_probe.py and pirate_cell.py) may be set. What ran for docs/results.md, 2026-12-01.
set -u
DATA=$1 R=$2
T0=$(date +%s)
DEADLINE=${DEADLINE:-500}
DEVICE=${DEVICE:-cuda}
mkdir -p $R/cells $R/logs $R/sets
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
CD=comdefend:weights=benchmarks/reference/proxy/comdefend-unseen
variant() {  # name poison_probe-options...
  local name=$1; shift
  OMP_NUM_THREADS=2 timeout $(left) python3 benchmarks/poison_probe.py --data $DATA \
    --surrogates benchmarks/reference/cifar10-h200/resnet_small --steps ${STEPS:-40} \
    --batch-size 1000 --device $DEVICE --threads 2 --out $R/sets/$name ${EXTRA_CRAFT:-} "$@" \
    > $R/logs/craft-$name.log 2>&1 || return
  cp $R/sets/$name/config.json $R/logs/$name-config.json
  echo "[$(( $(date +%s) - T0 )) s] $name crafted: $(tail -n 1 $R/logs/craft-$name.log | cut -c 1-300)"
  for c in "none resnet_small" "jpeg:quality=10 resnet_small" "grayscale resnet_small" \
           "$CD resnet_small" "none vgg_small" "jpeg:quality=10 vgg_small"; do
    set -- $c
    local tag=$(echo $1 | cut -d: -f1)$(echo $1 | grep -o 'quality=[0-9]*' | tr -dc 0-9)
    OMP_NUM_THREADS=1 timeout $(left) python3 benchmarks/pirate_cell.py --protector none \
      --pixels $R/sets/$name --defence $1 --arch $2 --data $DATA --device $DEVICE --threads 1 \
      ${EXTRA_CELL:-} --out $R/cells/$name--$tag--$2.json > $R/logs/$name--$tag--$2.log 2>&1 &
  done
  wait
}
variant fowl &
variant fowl-squeeze --squeeze &
while [ -n "$(jobs -rp)" ]; do
  sleep 20
  echo "[$(( $(date +%s) - T0 )) s] $(ls $R/cells | wc -l) cells done"
done
for f in $R/logs/*.log; do echo "== $f"; tail -n 1 $f | cut -c 1-400; done
