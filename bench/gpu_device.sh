#!/bin/bash
# Stages run on the device machine from the repo root:  bash bench/gpu_device.sh STAGE...
# Stages: info test smoke benchq bench study oom. Results land in $OUT (tarred).
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/opbreak-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
for stage in "$@"; do
  echo "=== stage $stage $(date -u +%FT%TZ)"
  case $stage in
    info) nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
          python3 -c "import torch,triton,lightllm,sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__)";;
    test) python3 -m pytest -q -x tests/test_lightllm.py 2>&1 | tail -15;;
    smoke) python3 bench/gpu_run_study.py bench/gpu_smoke.yaml --results results_smoke
           for f in results_smoke/logs/*.log; do echo "--- $f"; tail -4 "$f"; done
           ls -la results_smoke/measure/*/rep0/;;
    benchq) python3 bench/gpu_bench.py --out "$OUT/benchq" --quick;;
    bench) python3 bench/gpu_bench.py --out "$OUT/bench";;
    study) python3 bench/gpu_run_study.py config/studies/single-gpu.yaml --results results;;
    oom) python3 bench/gpu_run_study.py config/studies/single-gpu.yaml --results results_oom --repeats 1 \
           --only oom-7b-bs4096 h100-70b-etp8 \
           --extra '[{name: oom-7b-bs4096, gpu: H100-SXM, model: llama2-7b, tp: 1, batch: 4096, output_len: 8}]'
         for f in results_oom/logs/*.log; do echo "--- $f"; tail -3 "$f"; done;;
  esac
  tar czf "$OUT/results.tgz" results* 2>/dev/null
done
ls -la "$OUT"
