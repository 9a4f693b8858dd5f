#!/usr/bin/env bash
# Why try 8's poison holds a pirate at 0.13 and the key's 20-step poison at 0.64: one factor at a time.
#   bash benchmarks/poison_factors.sh DATA OUT    (DATA: CIFAR-10 train/ and test/; OUT: sets/, cells/, logs/)
# Variants (all L-inf 8 levels): try 8 itself (40 steps, resnet_small, labels, random start);
# 20 steps; the key's two targets; the targets' predicted class instead of the label (what the
# key did before it took class folders; `poison_hits.py` measures the same on a CPU without
# pirates); and the key's own path as `protect` now runs it (`pirate_cell.py --poison-steps 20`
# against both targets: network start, each image pushed from its label).
# Each is scored by a resnet_small and a vgg_small pirate (15 epochs, no defence). Written for
# one H200 lease (about 300 s); DEVICE (cuda), DEADLINE (480) and EXTRA_CRAFT / EXTRA_CELL may be set.
set -u
DATA=$1 R=$2
T0=$(date +%s)
DEADLINE=${DEADLINE:-480}
DEVICE=${DEVICE:-cuda}
K=benchmarks/reference/cifar10-h200
mkdir -p $R/cells $R/logs $R/sets
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
pirates() {  # set-name
  for arch in resnet_small vgg_small; do
    OMP_NUM_THREADS=1 timeout $(left) python3 benchmarks/pirate_cell.py --protector $K/protector \
      --pixels $R/sets/$1 --arch $arch --data $DATA --device $DEVICE --threads 1 ${EXTRA_CELL:-} \
      --out $R/cells/$1--$arch.json > $R/logs/$1--$arch.log 2>&1 &
  done
  wait
}
variant() {  # name poison_probe-options...
  local name=$1; shift
  OMP_NUM_THREADS=2 timeout $(left) python3 benchmarks/poison_probe.py --data $DATA \
    --batch-size 1000 --device $DEVICE --threads 2 --out $R/sets/$name ${EXTRA_CRAFT:-} "$@" \
    > $R/logs/craft-$name.log 2>&1 || return
  cp $R/sets/$name/config.json $R/logs/$name-config.json
  pirates $name
}
key() {  # the key's own path, 20 steps against both targets: protect, poison, keep, then pirates
  OMP_NUM_THREADS=2 timeout $(left) python3 benchmarks/pirate_cell.py --protector $K/protector \
    --poison-steps 20 --targets $K/resnet_small $K/convnet_small --save-pixels $R/sets/key-20 \
    --epochs 1 --data $DATA --device $DEVICE --threads 2 ${EXTRA_CELL:-} \
    --out $R/logs/key-20-probe.json > $R/logs/craft-key-20.log 2>&1 &
  while [ ! -f $R/sets/key-20/config.json ] && [ $(left) -gt 0 ]; do sleep 2; done
  pirates key-20
}
S=$K/resnet_small
variant probe-40 --surrogates $S --steps 40 &
variant probe-20 --surrogates $S --steps 20 &
variant ensemble-40 --surrogates $S $K/convnet_small --steps 40 &
variant predicted-40 --surrogates $S --steps 40 --predicted &
key &
while [ -n "$(jobs -rp)" ]; do sleep 20; echo "[$(( $(date +%s) - T0 )) s] $(ls $R/cells | wc -l) of 10 cells"; done
for f in $R/logs/*.log; do echo "== $f"; tail -n 1 $f | cut -c 1-300; done
