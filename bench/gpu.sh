#!/usr/bin/env bash
# Every GPU check of this repository, for a session lent one GPU (15 minutes of device time, 10 a call):
# two calls of at most eight and seven minutes, on the GPU machine's own Python (torch 2.11, triton 3.6 and
# transformers are there; nothing to install). Where only one fits, run part 1.
#
#   bash bench/gpu.sh 1    # the CUDA tests, then attention (Triton vs SDPA) and generation (vs transformers)
#   bash bench/gpu.sh 2    # continuous batching under a KV budget, a training step (MFU) and a GRPO step
#
# Tables and logs go to $OUT (the device tool's folder) or, without it, bench/results/. Each step has its own
# time limit, so one that hangs costs its limit, not the call; a step that fails does not stop the others.
set -uo pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-bench/results}
mkdir -p "$out"
part=${1:?"say which part: bash bench/gpu.sh 1 (tests, attention, generation) or 2 (engine, training, GRPO)"}

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, log to $out/NAME.log
    local name=$1 limit=$2; shift 2
    echo "== $name (at most ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | tail -n 25
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0))s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
case $part in
1)
    step gpu_tests 120 python3 -m pytest -q -x -m "not slow" tests/test_kernels.py tests/test_model.py
    step attention 100 python3 bench/attention.py --out="$out/attention_cuda.md"
    step generate 240 python3 bench/generate.py --batches=1,64 --new_tokens=128 --repeats=2 --stop_every=0 \
        --engine=no --out="$out/generate_cuda.md"  # two compiles (batch 1, batch 64) take most of it
    ;;
2)
    step engine 100 python3 bench/generate.py --engine=only --repeats=2 --out="$out/engine_cuda.md"
    step train 200 python3 bench/train.py --out="$out/train_cuda.md"
    step rl 120 python3 bench/rl.py --prompts=32 --samples=16 --new_tokens=512 --out="$out/rl_cuda.md"
    ;;
*)
    echo "unknown part '$part': 1 (tests, attention, generation) or 2 (engine, training, GRPO)"; exit 2
    ;;
esac
