#!/usr/bin/env bash
# COPE on 20 MATH-500 problems on a CUDA machine: the run launches SGLang for
# Qwen2.5-1.5B-Instruct (python -m sglang.launch_server ... --enable-deterministic-inference,
# with SGLANG_RETURN_ORIGINAL_LOGPROB=1), waits for its /health, checks its version, sends each
# stage's executions as one batched /generate, and stops the server at the end. The large
# model is any alias of conf/model/ (default gpt-4o-mini on OpenAI). docs/serving.md has more.
#
#   OPENAI_API_KEY=... experiments/gpu/math500_cope.sh                       # GPT-4o-mini
#   OPENAI_API_KEY=... experiments/gpu/math500_cope.sh gpt-4o                # GPT-4o
#   experiments/gpu/math500_cope.sh gpt-4o-mini models.gpt-4o-mini.base_url=http://host:8000/v1
#
# Needs: pip install -e . "sglang==0.5.23" transformers (SGLang 0.5.23 needs CUDA 13, Python
# >= 3.11 and glibc >= 2.34; on CUDA 12 use sglang==0.5.19); the model from the Hugging Face
# Hub (or HF_HOME holding it); MATH-500 as a file (COPE_DATA=dir with math500.jsonl) or online.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v nvidia-smi >/dev/null || { echo "error: no CUDA GPU here (nvidia-smi not found)" >&2; exit 1; }
python -c "import sglang" 2>/dev/null || { echo "error: pip install sglang==0.5.23 (CUDA 12: 0.5.19)" >&2; exit 1; }
large="${1:-gpt-4o-mini}"
shift || true
exec cope experiment=gpu_math500 "pair.roles.large=${large}" "$@"
