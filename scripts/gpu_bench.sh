#!/usr/bin/env bash
# The prepared GPU measurements of issues 6 and 15, as one command for a lent GPU machine.
#
#   bash scripts/gpu_bench.sh            # writes $OUT (default .bench/gpu) : *.json, *.log, gpu.txt
#
# The benchmark needs only torch, timm and lightning (the GPU image has them): the package
# runs from src/ without installing (an editable install would need the build backend from
# PyPI). Wheels carried in wheels/ (README, Notes) are installed when present. Each
# measurement has its own time limit (LIMIT seconds, default 70: seven of them fit one
# 10-minute device call) so that one slow variant cannot eat the device budget; a variant that runs out is logged and the next one runs.
# Benchmarks use random weights (speed does not depend on them). EXTRA is appended to every
# sosc.bench call (the last value of an option wins), e.g. a CPU smoke run:
#   EXTRA="--device cpu --backbone resnet18 --sizes 64 --batches 1 --warmup 0 --repeats 1" bash scripts/gpu_bench.sh
set -uo pipefail

OUT=${OUT:-.bench/gpu}
LIMIT=${LIMIT:-70}
mkdir -p "$OUT"

if [ -d wheels ] && ls wheels/*.whl >/dev/null 2>&1; then
    pip install --quiet --no-index --no-deps wheels/*.whl
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

measure() {  # name, then sosc.bench arguments
    local name=$1; shift
    echo "== $name: python -m sosc.bench $*"
    timeout "$LIMIT" python -m sosc.bench --backbone resnet101 --out "$OUT/$name.json" "$@" ${EXTRA:-} 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || echo "== $name: exit status $rc (124: ran past ${LIMIT} s)"
}

# In order of importance, so that a cut-short run still answers the main questions.
# Issue 15's levers, interleaved in one process: the capped 16 x 16 correlation grid
# (max_cells=16, configs/spair.yaml) against the uncapped one (the class default), and each center-pivot source branch on the GPU
# (conv3d, the GPU default, against the dilated conv2d the CPU uses). CATS=<checkout> adds CATs.
CATS_ARG=${CATS:+--cats $CATS}
measure levers512 --sizes 512 --batches 8 --what backbone kbcnet $CATS_ARG \
    --variant legacy max_cells=None cp4d=conv3d --variant capped max_cells=16 cp4d=conv3d --variant capped-dilated max_cells=16 cp4d=dilated-conv2d
measure levers256 --sizes 256 --batches 32 --what backbone kbcnet $CATS_ARG \
    --variant legacy max_cells=None cp4d=conv3d --variant capped max_cells=16 cp4d=conv3d --variant capped-dilated max_cells=16 cp4d=dilated-conv2d
# Issue 15's cost curve: pairs/s and peak memory against input size, inference, KBC's extra pass, training.
LIMIT=$((LIMIT * 2)) measure curve --sizes 256 384 512 640 --batches 8 --what backbone kbcnet kbc-zoom train --kbcnet max_cells=16
# Issue 15's data pipeline on a full-size SPair-71k tree written here (about 80 s the first time):
# workers' pairs/s per way of resampling, and the device's finishing step on the GPU.
LIMIT=$((LIMIT * 4)) measure data --data-tree "${DATA_TREE:-/tmp/sosc_spair_tree}" --sizes 256 512 --data-items 200
# Inference against the floor: 256 px at batch 32, 512 px at batch 8 (issue 6's settings).
measure infer256 --sizes 256 --batches 32 --what backbone kbcnet kbcnet+kbc
measure infer512 --sizes 512 --batches 8 --what backbone kbcnet kbcnet+kbc
# Training: batch 16 at 256 (pairs/s against CATs' 141 fp32) and at 512 (peak memory target 10.0 GiB).
measure train --sizes 256 512 --batches 16 --what backbone train
# Training memory at 512 px, batch 16: activation checkpointing, then also a frozen backbone.
measure ckpt512 --sizes 512 --batches 16 --what backbone train --kbcnet grad_checkpointing=True
measure frozen512 --sizes 512 --batches 16 --what backbone train --kbcnet freeze_backbone=True grad_checkpointing=True
# Levers: a strided first decoder block, then torch.compile.
measure strided --sizes 256 512 --batches 16 --what backbone kbcnet train --kbcnet "decoder_strides=(2, 1, 1)"
measure compiled --sizes 256 512 --batches 16 --precisions bf16 --what backbone kbcnet --compile
echo "== done; results in $OUT"
