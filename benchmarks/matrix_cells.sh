#!/usr/bin/env bash
# The thief's matrix cells the first H200 lease left out, all at once on one GPU:
#   bash benchmarks/matrix_cells.sh DATA OUT    (DATA: CIFAR-10 train/ and test/; OUT: cells/, logs/)
# DEVICE (cuda), DEADLINE (seconds from the start, 555) and EXTRA (more pirate_cell.py options)
# may be set. What ran for docs/results.md, 2026-11-30 (sixth session).
set -u
DATA=$1 R=$2
T0=$(date +%s)
DEADLINE=${DEADLINE:-555}
P=benchmarks/reference/cifar10-h200/protector
mkdir -p $R/cells $R/logs
cell() {  # name threads pirate_cell-options...
  local name=$1 threads=$2; shift 2
  OMP_NUM_THREADS=$threads timeout $(( DEADLINE - ($(date +%s) - T0) )) python3 benchmarks/pirate_cell.py \
    --protector $P --data $DATA --device ${DEVICE:-cuda} --threads $threads \
    --out $R/cells/$name.json ${EXTRA:-} "$@" > $R/logs/$name.log 2>&1 &
}
cell adversarial--resnet_small 1 --pgd-steps 4 --arch resnet_small
cell adversarial--vgg_small 1 --pgd-steps 4 --arch vgg_small
cell originals-adversarial--resnet_small 1 --images originals --pgd-steps 4 --arch resnet_small
cell originals-adversarial--vgg_small 1 --images originals --pgd-steps 4 --arch vgg_small
cell learned-inverse--resnet_small 4 --defence learned-inverse --arch resnet_small
cell learned-inverse--vgg_small 4 --defence learned-inverse --arch vgg_small
cell jpeg10--vgg_small 1 --defence jpeg:quality=10 --arch vgg_small
cell grayscale--vgg_small 1 --defence grayscale --arch vgg_small
cell median3--vgg_small 1 --defence median_filter:kernel_size=3 --arch vgg_small
cell resize0.75--vgg_small 1 --defence resize:scale=0.75 --arch vgg_small
cell bitdepth2--vgg_small 1 --defence bit_depth:bits=2 --arch vgg_small
while [ -n "$(jobs -rp)" ]; do
  sleep 20
  echo "[$(( $(date +%s) - T0 )) s] $(ls $R/cells | wc -l) cells done"
done
for f in $R/logs/*.log; do echo "== $f"; tail -n 1 $f; done
