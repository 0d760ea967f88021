#!/usr/bin/env bash
# The paper's Tables 3, 8, 9 and 11 on this machine: GSM8K (first 100 test problems), the
# packaged CPU pair (Qwen2.5-Coder 0.5B small, 1.5B large) on llama.cpp. TASK=mbpp runs
# Table 5's cells instead on the first 100 MBPP test problems (data from ../shared/data, or
# MBPP_SOURCE), into experiments/results/mbpp-cpu/.
#
# Each cell has a fixed run directory under experiments/results/gsm8k-cpu/ and runs with
# resume=true, so this script can be stopped at any moment and started again: finished
# problems are kept, and generations already made come from the shared cache. Cells are
# ordered so that cheap ones and cache-sharing ones come first.
#
# MBPP is judged on extended tests derived from its reference solutions
# (experiments/data/mbpp_derived_tests.jsonl, made by `python -m cope.tasks.derived_tests`),
# standing in for MBPP-ET, which this machine lacks: judged on the three given asserts, which
# the stages also filter by, any cascade that keeps a candidate passing them would count as
# right by construction. MBPP_JUDGE=given judges the same generations on the given asserts
# instead, into experiments/results/mbpp-cpu-given/ (from the shared cache: run it after the
# main cells, or it generates what they have not).
#
# The generation cache is not kept in git; its archive is (generations.jsonl.gz in the
# cells' directory, written after every cell). A fresh clone rebuilds the cache from it
# before the first cell, so cells that share samples with finished ones still cost nothing.
#
#   bash experiments/cpu_reproduction/run.sh            # every cell
#   bash experiments/cpu_reproduction/run.sh cope large # some cells
#   THREADS=1 bash experiments/cpu_reproduction/run.sh  # leave a core free
#   TASK=mbpp bash experiments/cpu_reproduction/run.sh   # MBPP: Table 5's cells
#
# Table 3's baselines run as cope methods: abc (on pair=tiers-cpu, which adds SmolLM2-135M
# below the small model), mot_vote, mot_verify and frugalgpt. FrugalGPT's scorer is trained
# first, once, on 200 problems disjoint from the evaluated ones (GSM8K test problems
# 1119-1318; MBPP's train split), into $OUT-training/ (outside $OUT, so the report does not
# take the training run for a cell). MoT's cascades need program-of-thought prompts, which
# code tasks do not have, so MBPP runs no MoT cell.
set -euo pipefail
cd "$(dirname "$0")/../.."
TASK=${TASK:-gsm8k}
OUT=${OUT:-experiments/results/$TASK-cpu}
CACHE_DIR=$OUT
# both MBPP judges share one cache: the generations do not depend on the judge
[ "$TASK" = mbpp ] && [ "${MBPP_JUDGE:-derived}" = given ] && OUT=$OUT-given
LIMIT=${LIMIT:-100}
TRAINING=${TRAINING:-$OUT-training}
mkdir -p "$OUT"
task_args=("task=$TASK")
scorer=$(realpath -m "$TRAINING/frugalgpt-scorer.json")

declare -A CELLS=(
  [large]="method=large"
  [small_single]="method=small_single"
  [cope]="method=cope"
  [small_majority]="method=small_majority"
  [abc]="method=abc pair=tiers-cpu"
  [mot_vote]="method=mot_vote"
  [mot_verify]="method=mot_verify"
  [frugalgpt]="method=frugalgpt method.stages.small.scorer=$scorer"
  [cope_s1s2]="method=cope_s1s2"
  [cope_votes4]="method=cope method.votes=4"
  [cope_tau0.5-0.5]="method=cope method.tau1=0.5 method.tau2=0.5"
  [cope_tau0.75-0.75]="method=cope method.tau1=0.75 method.tau2=0.75"
  [cope_tau0.5-0.75]="method=cope method.tau1=0.5 method.tau2=0.75"
  [cope_s2s3]="method=cope_s2s3"
  [cope_s1s3]="method=cope_s1s3"
  [cope_votes16]="method=cope method.votes=16"
  # more than half of the plans stop at plan_max_tokens=64 on this pair: a longer budget
  [cope_plan128]="method=cope method.plan_max_tokens=128"
)
ORDER=(large small_single cope small_majority abc mot_vote mot_verify frugalgpt cope_s1s2
       cope_votes4 cope_tau0.5-0.5 cope_tau0.75-0.75 cope_tau0.5-0.75 cope_s2s3 cope_s1s3
       cope_votes16 cope_plan128)
if [ "$TASK" = mbpp ]; then
  task_args+=("task.source=${MBPP_SOURCE:-../shared/data}")
  case "${MBPP_JUDGE:-derived}" in
    derived) task_args+=("task.hidden_tests=$(realpath experiments/data/mbpp_derived_tests.jsonl)") ;;
    given) ;;
    *) echo "MBPP_JUDGE=$MBPP_JUDGE: derived or given" >&2; exit 2 ;;
  esac
  ORDER=(large small_single small_majority cope abc frugalgpt)
elif [ "$TASK" != gsm8k ]; then
  echo "TASK=$TASK: this script runs gsm8k or mbpp" >&2
  exit 2
fi
[ $# -gt 0 ] && ORDER=("$@")

cache="$CACHE_DIR/generations.sqlite"
archive="$CACHE_DIR/generations.jsonl.gz"
if [ ! -f "$cache" ] && [ -f "$archive" ]; then
  python -m cope.cache_archive import "$archive" "$cache"
fi

threads=()
[ -n "${THREADS:-}" ] && threads=("backend.n_threads=$THREADS")

# the archive's first rows were keyed before keys carried the models' settings; they were made
# with the settings used here (the defaults), so they are reused and stored again under full keys
common=(backend=llamacpp concurrency=1 progress=false resume=true cache.path="$cache"
        cache.reuse_former_keys=true)

train_frugalgpt_scorer() {
  [ -f "$scorer" ] && return
  mkdir -p "$TRAINING"
  # 200 problems the evaluation never sees: GSM8K's last test problems, MBPP's train split
  local held_out=(task.offset=1119 task.limit=200)
  [ "$TASK" = mbpp ] && held_out=(task.split=train task.limit=200)
  echo "== frugalgpt scorer: training on $TASK ${held_out[*]}"
  python -m cope.baselines.frugalgpt train --out "$scorer" "${task_args[@]}" "${held_out[@]}" \
    pair=qwen-coder-cpu run_dir="$TRAINING/frugalgpt" "${common[@]}" "${threads[@]}"
}

for name in "${ORDER[@]}"; do
  [ -n "${CELLS[$name]:-}" ] || { echo "no cell named $name" >&2; exit 2; }
  [ "$name" = frugalgpt ] && train_frugalgpt_scorer
  pair=(pair=qwen-coder-cpu)
  [[ " ${CELLS[$name]} " == *" pair="* ]] && pair=()  # the cell names its own pair
  echo "== $name: ${CELLS[$name]}"
  # shellcheck disable=SC2086
  cope "${task_args[@]}" task.limit="$LIMIT" "${pair[@]}" run_dir="$OUT/$name" "${common[@]}" \
    ${CELLS[$name]} "${threads[@]}"
  python -m cope.cache_archive export "$cache" "$archive"
done
