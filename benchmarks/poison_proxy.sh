#!/usr/bin/env bash
# The key's poison at the thief's CPU proxy: does pushing from class folders poison a pirate?
#   bash benchmarks/poison_proxy.sh DATA OUT    (DATA: CIFAR-10 train/ and test/; OUT: cells/, logs/)
# Three resnet_small pirates, 6 epochs on the same seeded 10,000 training images, scored on
# 2,000 test images (the proxy of docs/results.md): the originals; the key's images with
# `protect --poison-steps 20` against both targets, each image pushed from its label (as
# `protect` does from class folders); the same pushed from the class the targets see
# (`--no-labels`, the poison before class folders). Two cells at a time, one thread each.
set -u
DATA=$1 R=$2
K=benchmarks/reference/cifar10-h200
mkdir -p $R/cells $R/logs
cell() {  # name pirate_cell-options...
  local name=$1; shift
  OMP_NUM_THREADS=1 python3 benchmarks/pirate_cell.py --protector $K/protector --data $DATA \
    --train-images 10000 --test-images 2000 --epochs 6 --threads 1 --device cpu \
    --out $R/cells/$name.json "$@" > $R/logs/$name.log 2>&1
}
POISON="--poison-steps 20 --targets $K/resnet_small $K/convnet_small"
( cell originals --images originals; cell predicted $POISON --no-labels ) &
cell labelled $POISON &
wait
for f in $R/cells/*.json; do echo "$f $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['accuracy'], d['wall_s'])" $f)"; done
