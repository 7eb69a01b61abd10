#!/bin/bash
# Stages run on a GPU host from the repo root:  bash bench/gpu_device.sh STAGE...
# Wheels in .whl/ (lightllm, rpyc, plumbum, pyzmq, snakemake and its dependencies; README "On GPUs")
# are installed into /tmp/site first. GPU studies run through snakemake, as a user runs them.
# Stages: info test smoke1 (one GPU) smoke2 (two GPUs; H100 configs) studyA studyB (the two-H100 study), and
# for H200 hosts: smoke_h200 (decode probe, host setups), two_gpu_h200 (config/studies/two-gpu-h200.yaml with
# nccl-tests from .gpu/nccl-tests), single_gpu_h200 (the single-GPU study's H200 configs), sweep_methods,
# fault_h200 (a rank stopped, then killed, mid-run on real NCCL; bench/gpu_fault_h200.yaml).
# Results land in $OUT as tarballs. docs/gpu-notes.md and the examples' READMEs say which stages ran when.
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/opbreak-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
command -v python >/dev/null || ln -sf "$(command -v python3)" /usr/local/bin/python
# targets first: --resources and --configfile each swallow the words that follow them
smk() { python3 -m snakemake "$@" --profile profiles/local --cores 1 --resources gpu=$(nvidia-smi -L | wc -l) --configfile "$CFG"; }
STUDY=config/studies/two-gpu.yaml
A="h100-llama7b-tp2-nvlink h100-llama7b-tp2-nop2p h100-llama7b-tp1"
targets() { for c in "$@"; do for r in 0 1; do echo results/measure/$c/rep$r/ops.csv; done; done; }
for stage in "$@"; do
  echo "=== stage $stage $(date -u +%FT%TZ)"
  case $stage in
    info) nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
          nvidia-smi topo -m; lscpu | grep -E "Model name|^CPU\(s\)"; uptime
          python3 -c "import torch,triton,lightllm,snakemake,sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__, snakemake.__version__)";;
    test) python3 -m pytest -q -x tests/test_lightllm.py 2>&1 | tail -8;;
    smoke2) CFG=bench/gpu_smoke2.yaml smk report/all.md 2>&1 | tail -15
            for f in logs/measure/*/rep0.log logs/sweep/*.log; do echo "--- $f"; tail -3 "$f"; done
            for c in results/measure/s-*/rep0; do echo "--- $c"; wc -l $c/*.csv | head -4; done
            grep -h "nccl_used" -A3 results/measure/s-tp2*/rep0/provenance.json | head -12
            tar czf "$OUT/smoke2.tgz" results logs report;;
    smoke1) CFG=bench/gpu_smoke2.yaml smk results/measure/s-tp1/rep0/ops.csv results/measure/s-etp2/rep0/ops.csv 2>&1 | tail -4
            for c in results/measure/s-tp1/rep0 results/measure/s-etp2/rep0; do echo "--- $c"; tail -2 logs/measure/${c#results/measure/}.log 2>/dev/null
              python3 -c "import pandas as pd; d=pd.read_csv('$c/ops.csv'); print(d[d.phase=='decode'][['op','time_ms','kernel_ms']].round(1).to_string(index=False))"; done;;
    studyA) CFG=$STUDY smk $(targets $A) 2>&1 | tail -8
            tar czf "$OUT/studyA.tgz" results/measure results/specs logs .snakemake/metadata;;
    smoke_h200) CFG=bench/gpu_smoke_h200.yaml smk results/aggregate/decode_probe.csv 2>&1 | tail -8
            tar czf "$OUT/smoke_h200.tgz" results logs;;
    two_gpu_h200) NT='nccl_tests={"src": ".gpu/nccl-tests", "gencode": "-gencode=arch=compute_90,code=sm_90"}'
            CFG=config/studies/two-gpu-h200.yaml timeout ${STUDY_TIMEOUT:-540} python3 -m snakemake report/all.md \
              --profile profiles/local --cores 1 --resources gpu=2 --configfile config/studies/two-gpu-h200.yaml \
              --config "$NT" 2>&1 | tail -12
            tar czf "$OUT/two_gpu_h200.tgz" results logs report measurements;;
    single_gpu_h200) T=$(for c in h200-7b-tp1 h200-70b-etp4 h200-70b-etp8; do for r in 0 1 2; do echo results/measure/$c/rep$r/ops.csv; done; done)
            CFG=config/studies/single-gpu.yaml smk $T 2>&1 | tail -8
            tar czf "$OUT/single_gpu_h200.tgz" results/measure results/specs logs measurements;;
    fault_h200) # bench/gpu_fault_h200.yaml: rank 1 of f-tp2 stopped (rep0), then killed (rep1), mid-run
            CFG=bench/gpu_fault_h200.yaml smk report/all.md > "$OUT/fault.log" 2>&1 & SMK=$!
            for rep in 0 1; do
              sig=$([ $rep = 0 ] && echo STOP || echo KILL); m=""; rank1=""
              for i in $(seq 1 400); do  # the measure process is the one whose children are the ranks
                for m in $(pgrep -f "opbreak.measure --spec results/specs/f-tp2.json --repeat $rep"); do
                  rank1=$(pgrep -P "$m" -f spawn_main | sort -n | sed -n 2p); [ -n "$rank1" ] && break; done
                [ -n "$rank1" ] && break; sleep 0.5; done
              sleep 12; t0=$(date +%s); kill -$sig "$rank1"; echo "rep$rep: SIG$sig to rank 1 (pid $rank1) $(date -u +%T)"
              while kill -0 "$m" 2>/dev/null; do sleep 0.5; done; kill -CONT "$rank1" 2>/dev/null
              echo "rep$rep: measure job ended $(( $(date +%s) - t0 )) s later; rank processes left: $(pgrep -f spawn_main | wc -l)"
              nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; done
            wait $SMK; echo "snakemake exit status $?"; tail -8 "$OUT/fault.log"
            tar czf "$OUT/fault_h200.tgz" results logs report/all.md;;
    sweep_methods) python3 bench/sweep_methods.py --gpus 2 --sizes 4096 262144 1048576 16777216 268435456 | tee "$OUT/methods-nvlink.txt";;
    studyB) CFG=$STUDY timeout ${STUDY_TIMEOUT:-540} python3 -m snakemake report/all.md --profile profiles/local \
              --cores 1 --resources gpu=$(nvidia-smi -L | wc -l) --configfile $STUDY 2>&1 | tail -12
            tar czf "$OUT/studyB.tgz" results logs report .snakemake/metadata;;
  esac
done
ls -la "$OUT"
