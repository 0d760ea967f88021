#!/usr/bin/env bash
# MT-Bench on this machine: COPE and the large model alone on the first 3 questions (both
# turns) with the packaged CPU pair (Qwen2.5-Coder 0.5B small, 1.5B large) on llama.cpp,
# then the large model judging COPE's answers against its own, both orders.
# Usage: experiments/mt_bench_cpu/run.sh [DATA_DIR]   (default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data}
R=experiments/results/mt_bench-cpu
COMMON=(task=mt_bench "task.source=$DATA" task.limit=3 pair=qwen-coder-cpu backend=llamacpp
        backend.n_threads=1 method.votes=4 method.max_tokens=160 "cache.path=$R/generations.sqlite"
        concurrency=1 resume=true)
cope "${COMMON[@]}" method=large run_dir=$R/large
cope "${COMMON[@]}" method=cope run_dir=$R/cope
python -m cope.judge $R/cope --against $R/large --out $R/judge --max-tokens 192 \
  pair=qwen-coder-cpu backend.n_threads=1 "cache.path=$R/generations.sqlite"
