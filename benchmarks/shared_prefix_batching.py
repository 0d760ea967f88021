"""Shared-prefix batching on the CPU: the 8 executions of one plan, decoded together in one
llama.cpp batch, against the same 8 requests decoded one after another.

    python benchmarks/shared_prefix_batching.py [--model qwen-coder-0.5b] [--tokens 128]

Writes benchmarks/results/shared_prefix_batching.json: tokens per second of both, their
ratio (goal: at least 2), and how many greedy outputs of the batch equal the sequential ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path

from omegaconf import OmegaConf

from cope.backends.llamacpp import LlamaCppBackend
from cope.models.packaged import PACKAGED_MODELS
from cope.samples import BackendRequest, SamplingParams
from cope.tasks.base import Plan, Problem
from cope.tasks.math import MathTask

RESULTS = Path(__file__).parent / "results" / "shared_prefix_batching.json"
PROBLEM = Problem("bench", "Janet's ducks lay 16 eggs per day. She eats three for breakfast every "
                  "morning and bakes muffins for her friends every day with four. She sells the "
                  "remainder at the farmers' market daily for $2 per fresh duck egg. How much in "
                  "dollars does she make every day at the farmers' market?", "18")
PLAN = Plan("guideline", "Subtract the eggs she eats and bakes from the eggs laid, then multiply "
            "the remainder by the price per egg.", "large")


class _Prompts(MathTask):
    def load(self):
        return [PROBLEM]


def requests(identity: str, temperature: float, tokens: int) -> list[BackendRequest]:
    messages = _Prompts(None).execute_messages(PROBLEM, [PLAN])
    return [BackendRequest(identity, messages, SamplingParams(temperature, tokens, seed=1000 + i), i)
            for i in range(8)]


def measure(batch_size: int, model: str, temperature: float, tokens: int) -> tuple[float, list]:
    cfg = OmegaConf.create({"n_threads": None, "n_ctx": 4096, "n_batch": 512, "reuse_prefix": False,
                            "batch_size": batch_size, "batch_n_ctx": 16384, "verbose": False})
    backend = LlamaCppBackend(cfg)
    identity = backend.add_model(model, OmegaConf.create({"identity": f"packaged:{model}",
                                                          "packaged": model, "path": None}))
    batch = requests(identity, temperature, tokens)
    start = time.perf_counter()
    completions = asyncio.run(backend.generate(batch))
    elapsed = time.perf_counter() - start
    backend.close()
    return elapsed, completions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen-coder-0.5b", choices=sorted(PACKAGED_MODELS))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args()
    figures = {}
    for label, temperature in (("sampled", 0.8), ("greedy", 0.0)):
        seq_time, seq = measure(1, args.model, temperature, args.tokens)
        bat_time, bat = measure(8, args.model, temperature, args.tokens)
        seq_tokens = sum(c.completion_tokens for c in seq)
        bat_tokens = sum(c.completion_tokens for c in bat)
        figures[label] = {
            "sequential_s": round(seq_time, 2), "sequential_tokens": seq_tokens,
            "sequential_tok_per_s": round(seq_tokens / seq_time, 2),
            "batched_s": round(bat_time, 2), "batched_tokens": bat_tokens,
            "batched_tok_per_s": round(bat_tokens / bat_time, 2),
            "speedup": round((bat_tokens / bat_time) / (seq_tokens / seq_time), 2),
        }
        if label == "greedy":
            figures[label]["identical_outputs"] = sum(a.text == b.text for a, b in zip(seq, bat))
            figures[label]["of"] = len(seq)
    result = {
        "benchmark": "shared-prefix batching, 8 executions of one plan",
        "model": args.model, "max_tokens": args.tokens, "cpus": os.cpu_count(),
        "machine": platform.machine(), "goal": "batched tok/s >= 2 x sequential tok/s",
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
