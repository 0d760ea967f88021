"""A small sweep of real run directories, made in seconds with a scripted backend whose
answers are right with a probability that depends on the model, the plan it was given and
the problem: the large model is right more often than the small one, a large-model
guideline helps the small one, and some problems are hard for both."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from cope.backends.scripted import ScriptedBackend
from cope.runner import run
from cope.tasks.math import EXECUTOR

from conftest import compose_config

# cell name -> overrides, laid out as experiments/cpu_reproduction/run.sh lays them out
CELLS = {
    "large": ["method=large"],
    "small_single": ["method=small_single"],
    "small_majority": ["method=small_majority"],
    "cope": ["method=cope"],
    "cope_s1s2": ["method=cope_s1s2"],
    "cope_s2s3": ["method=cope_s2s3"],
    "cope_votes4": ["method=cope", "method.votes=4"],
    "cope_tau0.5-0.5": ["method=cope", "method.tau1=0.5", "method.tau2=0.5"],
}


def _uniform(*parts) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def gold_aware_responder(golds: dict[str, str]):
    def respond(request):
        system, user = request.messages[0][1], request.messages[-1][1]
        if system != EXECUTOR:
            return f"A plan for this problem (#{request.sample_index})."
        question = user.split("Problem:\n", 1)[1].split("\n\nA plan to follow:")[0]
        gold = golds[question]
        hardness = _uniform("hard", question)
        if "1.5b" in request.model_identity:
            p = 0.95 - 0.4 * hardness
        else:
            p = 0.65 - 0.55 * hardness + (0.15 if "Guideline:" in user else 0.0)
        u = _uniform(request.content_key())
        if u < p:
            answer = gold
        else:  # most wrong answers agree on one trap, so a wrong majority can form
            answer = str(int(float(gold)) + (1 if int(u * 1000) % 4 else 2))
        return f"Step by step. Therefore, the final answer is: $\\boxed{{{answer}}}$."

    return respond


def gsm8k_golds() -> dict[str, str]:
    from types import SimpleNamespace

    from cope.tasks.math_data import GSM8K

    return {p.question: p.gold for p in GSM8K(SimpleNamespace(source=None)).load()}


def make_sweep(root: Path, cells=CELLS, limit: int = 40, seeds=(0,), prefix=()) -> Path:
    """Run every cell into root/<cell> (root/<cell>/seed<k> for several seeds), with the
    CPU pair's names and prices; returns root."""
    backend = ScriptedBackend(gold_aware_responder(gsm8k_golds()))
    for name, overrides in cells.items():
        for seed in seeds:
            run_dir = root / name if len(seeds) == 1 else root / name / f"seed{seed}"
            cfg = compose_config([
                "pair=qwen-coder-cpu", "backend.name=scripted", f"task.limit={limit}",
                f"seed={seed}", f"run_dir={run_dir}", f"cache.path={root / 'generations.sqlite'}",
                "progress=false", *prefix, *overrides])
            run(cfg, backends={"scripted": backend})
    return root


def cut_short(run_dir: Path, keep: int, torn: bool = True) -> None:
    """Make a run look killed after `keep` problems: no metrics.json, and (as a kill
    mid-write leaves it) a torn last line."""
    lines = (run_dir / "problems.jsonl").read_text().splitlines(keepends=True)
    text = "".join(lines[:keep]) + (lines[keep][: len(lines[keep]) // 2] if torn else "")
    (run_dir / "problems.jsonl").write_text(text)
    (run_dir / "metrics.json").unlink()


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
