"""Training FrugalGPT's scorer (cope/baselines/frugal_scorer.py):

    python -m cope.baselines.frugalgpt train task=gsm8k task.offset=1119 pair=qwen-coder-cpu

runs the cheap tier (the method's first scored stage) on the selected problems through the
normal runner (records, cache, resume), fits the scorer on whether each answer was right and
writes it where the method's `scorer` field points.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from cope.baselines.encoder import SentenceEncoder
from cope.baselines.frugal_scorer import fit, scorer_path
from cope.confidence import scored_response
from cope.config import refuse_renamed
from cope.errors import ConfigError, CopeError, unknown_name
from cope.paths import CONFIG_DIR
from cope.records import read_complete_lines, write_atomic
from cope.runner import run
from cope.tasks import create_task
from cope.tasks.base import select


def training_examples(run_dir: Path, questions: dict[str, str], stage: str
                      ) -> tuple[list[str], list[str], list[bool], list[str]]:
    """(questions, responses, labels, ids) from a run's records: per problem, the stage's
    response behind its answer and whether the answer was right."""
    texts: dict[str, dict[int, str]] = defaultdict(dict)
    for sample in read_complete_lines(run_dir / "samples.jsonl"):
        if sample["stage"] == stage and sample["role"] == "executor":
            texts[sample["problem_id"]][sample["sample_index"]] = sample["text"]
    out: tuple[list, list, list, list] = ([], [], [], [])
    for row in read_complete_lines(run_dir / "problems.jsonl"):
        record = next(s for s in row["stages"] if s["stage"] == stage)
        responses = [texts[row["id"]][i] for i in sorted(texts[row["id"]])]
        for column, value in zip(out, (questions[row["id"]], scored_response(
                responses, record["support"]), bool(row["correct"]), row["id"])):
            column.append(value)
    return out


def train(overrides: list[str], out: str | None = None, stage: str | None = None,
          c: float = 1.0, backends=None) -> Path:
    """Run the cheap tier on the selected problems, fit a scorer, write it; its path.
    `backends` injects ready-made backends by name, as for `cope.runner.run`."""
    refuse_renamed(overrides)
    if not any(o.split("=", 1)[0].lstrip("+~") == "method" for o in overrides):
        overrides = ["method=frugalgpt", *overrides]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    scored = [n for n in cfg.method.order if cfg.method.stages[n].confidence == "scorer"]
    if stage is not None and stage not in cfg.method.stages:
        raise ConfigError("--stage: " + unknown_name("stage", stage, cfg.method.stages.keys()))
    stage = stage or (scored[0] if scored else None)
    if stage is None:
        raise ConfigError(f"Which stage's scorer? Method '{cfg.method.name}' has no stage "
                          "with confidence=scorer; name one with --stage.")
    path = Path(out).expanduser() if out else scorer_path(cfg.method.stages[stage].scorer)
    encoder = SentenceEncoder.shared()  # fail on a missing encoder before any generation
    with open_dict(cfg):
        # the cheap tier alone, answering every problem: its answers are the training labels
        cfg.method.order = [stage]
        cfg.method.stages[stage].confidence = "consensus"
    result = run(cfg, backends)
    if not result.metrics["finished"]:
        raise ConfigError(f"The training run stopped ({result.metrics['stopped_reason']}); "
                          f"resume it with run_dir={result.run_dir} resume=true.")
    problems = select(create_task(cfg.task).load(), cfg.task.ids, cfg.task.offset, cfg.task.limit)
    questions, responses, labels, ids = training_examples(
        result.run_dir, {p.id: p.question for p in problems}, stage)
    training = {"task": cfg.task.name, "split": cfg.task.split, "source": cfg.task.source,
                "problem_ids": ids, "stage": stage,
                "model": cfg.pair.roles[cfg.method.stages[stage].executor],
                "run_dir": str(result.run_dir)}
    data = fit(questions, responses, labels, encoder, c=c, training=training)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cope.baselines.frugalgpt",
        description="Train FrugalGPT's accept-or-escalate scorer on problems the evaluation "
                    "does not use.")
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train", help="run the cheap tier, label, fit, save")
    train_parser.add_argument("--out", help="scorer file (default: the method's scorer path)")
    train_parser.add_argument("--stage", help="the scored stage (default: the first one)")
    train_parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength")
    train_parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `cope`")
    args = parser.parse_args(argv)
    try:
        path = train(args.overrides, args.out, args.stage, args.c)
    except CopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    training = json.loads(path.read_text())["training"]
    auc = training.get("cross_validated_auc")
    print(f"scorer trained on {training['n']} problems ({training['n_right']} answered right), "
          f"training accuracy {training['train_accuracy']:.1%} (always the majority answer: "
          f"{training['majority_accuracy']:.1%}), cross-validated AUC "
          f"{'n/a' if auc is None else f'{auc:.2f}'}\n{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
