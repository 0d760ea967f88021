"""The CPU's decode limit and cope's share of it, measured in one run.

    python benchmarks/cpu_limit.py [--batch-sizes 1 2 4 8 16 32] [--steps 128] [--repeats 3]
                                   [--quickstart-runs 1]

1. The limit. For each model of the CPU pair, llama.cpp's own batch API (no cope code)
   decodes B sequences that share one GSM8K executor prompt, each in KV cells of its own, for
   `--steps` steps, every sequence kept in the batch (an end-of-generation token is fed on
   like any other, so the batch never thins out). Tokens per second of the decode at each B,
   and of the prompt's evaluation; medians of `--repeats`.
2. cope. The quickstart (`experiment=quickstart`: COPE on 10 GSM8K problems) with the cache
   off, in a process of its own, on two paths in turns: `continuous` (as configured: 10
   problems in flight, one batch per model kept full) and `fixed` (the path it had before:
   one problem at a time, a stage's executions batched together, reproducible bit for bit).
   Their metrics give the wall time and the tokens each model evaluated and generated;
   their records, per problem, the answer's correctness and each stage's consensus,
   compared pairwise (McNemar exact; Wilcoxon signed-rank on stage 1's consensus).
3. The share. The time the limit needs for the quickstart's work: each model's completion
   tokens at its best batched rate (decode only), and the same plus its prompt tokens at its
   prompt rate (an upper bound: cope evaluates a shared prefix once); over cope's wall time.
   Where the backend reports the prompt tokens it took from other sequences' cells (the
   continuous path: `prefix_cache` in its metrics), the share is also given against the
   decode plus the prompt tokens it did evaluate, at the prompt rate: work no scheduler on
   this machine avoids without sharing more.
   This machine's speed drifts by tens of percent within an hour, so the best width is
   measured again right before and right after every quickstart run, and each run's share is
   against the mean of those two ("adjacent"); the share against the table is reported too.

Writes benchmarks/results/cpu_limit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's cope, whichever is installed

import llama_cpp  # noqa: E402

from cope.backends.llamacpp_batch import chat_prompt_tokens  # noqa: E402
from cope.models.packaged import ensure_packaged_model  # noqa: E402
from cope.tasks.base import Problem  # noqa: E402
from cope.tasks.math import MathTask  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "cpu_limit.json"
MODELS = {"qwen-coder-0_5b": "qwen-coder-0.5b", "qwen-coder-1_5b": "qwen-coder-1.5b"}  # alias: package
PROBLEM = Problem("bench", "Janet's ducks lay 16 eggs per day. She eats three for breakfast every "
                  "morning and bakes muffins for her friends every day with four. She sells the "
                  "remainder at the farmers' market daily for $2 per fresh duck egg. How much in "
                  "dollars does she make every day at the farmers' market?", "18")


class _Prompts(MathTask):
    def load(self):
        return [PROBLEM]


def _add(batch, token: int, pos: int, seqs: list[int], logits: bool) -> None:
    j = batch.n_tokens
    batch.token[j], batch.pos[j], batch.n_seq_id[j] = token, pos, len(seqs)
    for k, seq in enumerate(seqs):
        batch.seq_id[j][k] = seq
    batch.logits[j] = logits
    batch.n_tokens = j + 1


def decode_rate(llm: llama_cpp.Llama, prompt: list[int], width: int, steps: int,
                threads: int) -> tuple[float, float]:
    """(decode tokens/s with `width` sequences, prompt tokens/s), llama.cpp alone. Each
    sequence has KV cells of its own, as in cope's continuous path: the prompt is evaluated
    once, in sequence 0, and its cells copied to the others."""
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = width * (len(prompt) + steps + 8)
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = width
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = False
    params.no_perf = True
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    memory = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    chains = []
    for seq in range(width):
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(0.8))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(1000 + seq))
        chains.append(chain)
    try:
        start = time.perf_counter()
        for begin in range(0, len(prompt), 512):
            batch.n_tokens = 0
            for pos in range(begin, min(begin + 512, len(prompt))):
                _add(batch, prompt[pos], pos, [0], pos == len(prompt) - 1)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed on the prompt")
        prompt_s = time.perf_counter() - start
        first = llama_cpp.llama_sampler_sample(chains[0], ctx, batch.n_tokens - 1)
        for seq in range(1, width):  # the copies land at the first decode (timed with it)
            llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        last = [first] * width
        start = time.perf_counter()
        for step in range(steps):
            batch.n_tokens = 0
            for seq in range(width):
                _add(batch, last[seq], len(prompt) + step, [seq], True)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed while decoding")
            last = [llama_cpp.llama_sampler_sample(chain, ctx, j) for j, chain in enumerate(chains)]
        decode_s = time.perf_counter() - start
    finally:
        for chain in chains:
            llama_cpp.llama_sampler_free(chain)
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return width * steps / decode_s, len(prompt) / prompt_s


def measure_limit(batch_sizes: list[int], steps: int, repeats: int, threads: int
                  ) -> dict[str, dict]:
    messages = [{"role": role, "content": text}
                for role, text in _Prompts(None).execute_messages(PROBLEM, [])]
    out: dict[str, dict] = {}
    for alias, package in MODELS.items():
        llm = llama_cpp.Llama(model_path=str(ensure_packaged_model(package)), n_ctx=512,
                              n_threads=threads, verbose=False)
        prompt = chat_prompt_tokens(llm, messages)
        decode: dict[int, list[float]] = {width: [] for width in batch_sizes}
        prompt_rates = []
        for _ in range(repeats):  # the widths in turns, so slow spells hit all of them
            for width in batch_sizes:
                tokens_s, prompt_s = decode_rate(llm, prompt, width, steps, threads)
                decode[width].append(tokens_s)
                prompt_rates.append(prompt_s)
        medians = {width: statistics.median(rates) for width, rates in decode.items()}
        best = max(medians, key=medians.get)
        out[alias] = {"prompt_tokens": len(prompt),
                      "decode_tokens_per_s": {str(w): round(r, 1) for w, r in medians.items()},
                      "decode_runs": {str(w): [round(r, 1) for r in rates]
                                      for w, rates in decode.items()},
                      "prompt_tokens_per_s": round(statistics.median(prompt_rates), 1),
                      "best_width": best, "best_decode_tokens_per_s": round(medians[best], 1)}
        llm.close()
    return out


PATHS = {  # the quickstart as it is configured, and the path it had before
    "fixed": ["backend.batching=fixed", "backend.batch_size=8", "backend.batch_n_ctx=16384",
              "concurrency=1"],
    "continuous": [],
}


def run_quickstart(extra: list[str]) -> dict:
    """The quickstart through cope in a process of its own, cache off; its metrics."""
    with tempfile.TemporaryDirectory(prefix="cope-cpu-limit-") as scratch:
        run_dir = Path(scratch) / "run"
        env = dict(os.environ, COPE_RUNS_DIR=str(Path(scratch) / "runs"))
        command = [sys.executable, "-m", "cope.cli", "experiment=quickstart", "cache.mode=off",
                   "progress=false", "tracker=none", f"run_dir={run_dir}", *extra]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"the quickstart failed:\n{done.stderr[-3000:]}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows = [json.loads(line) for line in (run_dir / "problems.jsonl").read_text().splitlines()]
        return {"overrides": extra, "process_s": round(elapsed, 1),
                "problems": [{"id": r["id"], "correct": r["correct"],
                              "resolved_stage": r["resolved_stage"],
                              "consensus": {st["stage"]: st["consensus"] for st in r["stages"]}}
                             for r in rows],
                "wall_time_s": metrics["wall_time_s"], "accuracy": metrics["accuracy"],
                "cost_usd_per_million": metrics["cost_usd_per_million"],
                "resolved_by_stage": metrics["resolved_by_stage"],
                "tokens_by_model": metrics["tokens_by_model"],
                "prompt_tokens_evaluated": {
                    alias: counts["prompt_tokens"] - counts["cached_tokens"]
                    for alias, counts in metrics.get("prefix_cache", {}).items()},
                "problems_sha256": _sha256(run_dir / "problems.jsonl")}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def mean_limit(measurements: list[dict]) -> dict:
    """The limits measured right before and right after a run, averaged per model."""
    return {alias: {key: statistics.fmean(m[alias][key] for m in measurements)
                    for key in ("best_decode_tokens_per_s", "prompt_tokens_per_s")}
            for alias in measurements[0]}


def share_of_limit(run: dict, limit: dict) -> dict:
    decode_s = sum(run["tokens_by_model"][alias]["completion"] / limit[alias]["best_decode_tokens_per_s"]
                   for alias in limit if alias in run["tokens_by_model"])
    prompt_s = sum(run["tokens_by_model"][alias]["prompt"] / limit[alias]["prompt_tokens_per_s"]
                   for alias in limit if alias in run["tokens_by_model"])
    wall = run["wall_time_s"]
    generated = sum(t["completion"] for t in run["tokens_by_model"].values())
    share = {"limit_decode_s": round(decode_s, 1),
             "limit_decode_and_prompt_s": round(decode_s + prompt_s, 1),
             "share_decode_only": round(decode_s / wall, 3),
             "share_with_prompts": round((decode_s + prompt_s) / wall, 3),
             "generated_tokens_per_s": round(generated / wall, 1)}
    # where the backend says which prompt tokens it took from cells (the continuous path):
    # the prompt tokens it did evaluate, at the prompt rate, are work the machine must do
    evaluated = run.get("prompt_tokens_evaluated") or {}
    if evaluated and all(alias in evaluated for alias in run["tokens_by_model"]):
        evaluated_s = sum(evaluated[alias] / limit[alias]["prompt_tokens_per_s"]
                          for alias in limit if alias in evaluated)
        share.update(limit_decode_and_evaluated_prompts_s=round(decode_s + evaluated_s, 1),
                     share_with_evaluated_prompts=round((decode_s + evaluated_s) / wall, 3))
    return share


def compare(fixed: dict, fast: dict) -> dict:
    """The fast path's answers against the reproducible path's, problem by problem."""
    from scipy.stats import wilcoxon

    from analysis.stats import mcnemar_exact

    a = {p["id"]: p for p in fast["problems"]}
    b = {p["id"]: p for p in fixed["problems"]}
    ids = [i for i in b if i in a]
    test = mcnemar_exact([a[i]["correct"] for i in ids], [b[i]["correct"] for i in ids])
    s1 = [(a[i]["consensus"].get("s1"), b[i]["consensus"].get("s1")) for i in ids]
    s1 = [(x, y) for x, y in s1 if x is not None and y is not None]
    differences = [x - y for x, y in s1]
    wilcoxon_p = (float(wilcoxon(differences).pvalue) if any(differences) else 1.0)
    return {"problems": len(ids),
            "correct_fixed": sum(bool(b[i]["correct"]) for i in ids),
            "correct_continuous": sum(bool(a[i]["correct"]) for i in ids),
            "only_continuous_right": test.only_a, "only_fixed_right": test.only_b,
            "mcnemar_p": test.p_value,
            "s1_consensus_mean_fixed": round(sum(y for _, y in s1) / len(s1), 3) if s1 else None,
            "s1_consensus_mean_continuous": round(sum(x for x, _ in s1) / len(s1), 3) if s1 else None,
            "s1_consensus_wilcoxon_p": wilcoxon_p,
            "same_resolving_stage": sum(a[i]["resolved_stage"] == b[i]["resolved_stage"]
                                        for i in ids)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=128, help="decode steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quickstart-runs", type=int, default=1,
                        help="0: the limit only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args(argv)
    threads = os.cpu_count() or 1
    started = time.time()
    load_before = os.getloadavg()[0]
    limit = measure_limit(args.batch_sizes, args.steps, args.repeats, threads)
    print(json.dumps(limit, indent=1))
    best_width = [max(limit[a]["best_width"] for a in limit)]
    runs: dict[str, list[dict]] = {path: [] for path in PATHS}
    adjacent = [measure_limit(best_width, args.steps, 1, threads)] if args.quickstart_runs else []
    for turn in range(args.quickstart_runs):
        order = list(PATHS) if turn % 2 == 0 else list(reversed(PATHS))
        for path in order:
            run = run_quickstart(PATHS[path])
            adjacent.append(measure_limit(best_width, args.steps, 1, threads))
            run["share"] = share_of_limit(run, limit)
            run["share_adjacent"] = share_of_limit(run, mean_limit(adjacent[-2:]))
            print(path, json.dumps({k: v for k, v in run.items() if k != "problems"}, indent=1))
            runs[path].append(run)
    summary = {}
    if args.quickstart_runs:
        wall = {path: statistics.median(r["wall_time_s"] for r in rs) for path, rs in runs.items()}

        def median_share(kind: str, figure: str) -> dict[str, float | None]:
            """Per path, the median over its runs; None where a run lacks the figure."""
            values = {path: [r[kind].get(figure) for r in rs] for path, rs in runs.items()}
            return {path: None if None in v else statistics.median(v)
                    for path, v in values.items()}

        summary = {"wall_time_s": wall,
                   "continuous_over_fixed_wall_time": round(wall["continuous"] / wall["fixed"], 3),
                   "share_of_adjacent_limit_decode_only":
                       median_share("share_adjacent", "share_decode_only"),
                   "share_of_limit_decode_only": median_share("share", "share_decode_only"),
                   "share_of_limit_with_prompts": median_share("share", "share_with_prompts"),
                   "share_of_adjacent_limit_with_evaluated_prompts":
                       median_share("share_adjacent", "share_with_evaluated_prompts"),
                   "adjacent_best_decode_tokens_per_s": {
                       alias: [m[alias]["best_decode_tokens_per_s"] for m in adjacent]
                       for alias in limit},
                   "distributions": compare(runs["fixed"][0], runs["continuous"][0])}
        print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cpus": threads, "platform": platform.platform(), "cpu": _cpu_model(),
                    "load_average_before": round(load_before, 2),
                    "load_average_after": round(os.getloadavg()[0], 2)},
        "llama_cpp_python": llama_cpp.__version__, "steps": args.steps, "repeats": args.repeats,
        "limit": limit, "limit_adjacent": adjacent, "summary": summary, "quickstart": runs,
        "took_s": round(time.time() - started, 1),
    }, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
