"""FrugalGPT's learned scorer (Chen et al. 2023): accept the cheap tier's answer, or escalate.

The scorer is a logistic regression over sentence embeddings (all-MiniLM-L6-v2, packaged) of
the question and of the cheap tier's response, trained on problems the evaluation does not
use, labelled by whether the cheap tier was right. A stage with `confidence: scorer` takes
the scorer's probability as its confidence. Train one with

    python -m cope.baselines.frugalgpt train task=gsm8k task.offset=1119 pair=qwen-coder-cpu

which runs the cheap tier (the method's first scored stage) on the selected problems through
the normal runner (records, cache, resume), fits the scorer and writes it where the method's
`scorer` field points. A scorer file is JSON: weights, the encoder's identity and the ids of
its training problems, so a run on any of those problems is refused.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from cope.engine import scored_response
from cope.errors import ConfigError, unknown_name
from cope.paths import cope_home

FORMAT = "cope-frugalgpt-scorer/1"
RESPONSE_TAIL = 1000  # characters: the encoder reads 256 word pieces, and a response ends in its answer


def scorer_path(value: str) -> Path:
    """A scorer file: absolute, or relative to $COPE_HOME/scorers/."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else cope_home() / "scorers" / path


def features(encoder, questions: list[str], responses: list[str]):
    """[embedding(question), embedding(end of response)] per example."""
    import numpy as np

    q = encoder.encode(list(questions))
    r = encoder.encode([response[-RESPONSE_TAIL:] for response in responses])
    return np.concatenate([q, r], axis=1).astype("float64")


class FrugalScorer:
    """A trained scorer file, ready to judge answers."""

    def __init__(self, data: dict[str, Any], encoder, path: Path | None = None) -> None:
        import numpy as np

        if data.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a FrugalGPT scorer file (format {data.get('format')!r}, "
                              f"expected {FORMAT}).")
        if data["encoder"] != encoder.identity:
            raise ConfigError(f"{path}: trained with encoder {data['encoder']}, but this machine "
                              f"has {encoder.identity}. Retrain the scorer.")
        self.data = data
        self.path = path
        self.encoder = encoder
        self.weights = np.asarray(data["weights"], dtype="float64")
        self.bias = float(data["bias"])

    @classmethod
    def from_file(cls, path: Path, encoder=None) -> "FrugalScorer":
        from cope.baselines.encoder import SentenceEncoder

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg}); retrain the scorer.") from None
        return cls(data, encoder or SentenceEncoder.shared(), path)

    def probabilities(self, questions: list[str], responses: list[str]) -> list[float]:
        logits = features(self.encoder, questions, responses) @ self.weights + self.bias
        return [1.0 / (1.0 + math.exp(-float(z))) for z in logits]

    def probability(self, question: str, response: str) -> float:
        return self.probabilities([question], [response])[0]


def fit(questions: list[str], responses: list[str], labels: list[bool], encoder,
        c: float = 1.0, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the scorer; the contents of a scorer file."""
    from sklearn.linear_model import LogisticRegression

    n_right = sum(bool(label) for label in labels)
    if n_right in (0, len(labels)):
        raise ConfigError(
            f"All {len(labels)} training answers were {'right' if n_right else 'wrong'}: a scorer "
            "needs both kinds. Train on more (or other) problems, e.g. a larger task.limit.")
    x = features(encoder, questions, responses)
    y = [int(bool(label)) for label in labels]
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(x, y)
    return {
        "format": FORMAT,
        "encoder": encoder.identity,
        "features": f"embedding(question) ++ embedding(last {RESPONSE_TAIL} characters of response)",
        "weights": [float(w) for w in model.coef_[0]],
        "bias": float(model.intercept_[0]),
        "regularization_c": c,
        "training": dict(training or {}, n=len(labels), n_right=n_right,
                         train_accuracy=float(model.score(x, y)),
                         majority_accuracy=max(n_right, len(y) - n_right) / len(y),
                         cross_validated_auc=cross_validated_auc(model, x, y)),
    }


def cross_validated_auc(model, x, y: list[int], folds: int = 5) -> float | None:
    """ROC AUC of out-of-fold probabilities of fresh copies of `model`: whether the scorer
    tells right answers from wrong ones on problems it was not fitted to (0.5 is chance).
    Training accuracy cannot say this when most answers are wrong. None when a class has
    fewer than two examples."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = min(folds, sum(y), len(y) - sum(y))
    if folds < 2:
        return None
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    # cross_val_predict fits clones: `model` itself stays as fitted
    held_out = cross_val_predict(model, x, y, cv=split, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, held_out))


def load_scorers(cfg, problems) -> dict[str, FrugalScorer]:
    """The scorer of every stage with confidence=scorer; refuses a missing file and a scorer
    trained on any of the problems this run evaluates."""
    scorers: dict[str, FrugalScorer] = {}
    for name in cfg.method.order:
        stage = cfg.method.stages[name]
        if stage.confidence != "scorer":
            continue
        path = scorer_path(stage.scorer)
        if not path.is_file():
            raise ConfigError(
                f"method.stages.{name}.scorer: no scorer at {path}. Train one on problems this "
                f"run does not use, e.g. `python -m cope.baselines.frugalgpt train "
                f"task={cfg.task.name} pair={cfg.pair.name} task.offset=... task.limit=...` "
                f"(it writes {path}), or point method.stages.{name}.scorer at a scorer file.")
        scorer = FrugalScorer.from_file(path)
        training = scorer.data.get("training", {})
        if (training.get("task"), training.get("split"), training.get("source")) == (
                cfg.task.name, cfg.task.split, cfg.task.source):
            overlap = set(training.get("problem_ids", [])) & {p.id for p in problems}
            if overlap:
                raise ConfigError(
                    f"{path} was trained on {len(overlap)} of the problems this run evaluates "
                    f"(e.g. id {sorted(overlap)[0]}). Choose disjoint problems (task.offset, "
                    "task.limit, task.ids) or train the scorer on others.")
        scorers[name] = scorer
    return scorers


def training_examples(run_dir: Path, questions: dict[str, str], stage: str
                      ) -> tuple[list[str], list[str], list[bool], list[str]]:
    """(questions, responses, labels, ids) from a run's records: per problem, the stage's
    response behind its answer and whether the answer was right."""
    from cope.records import read_jsonl

    texts: dict[str, dict[int, str]] = defaultdict(dict)
    for sample in read_jsonl(run_dir / "samples.jsonl"):
        if sample["stage"] == stage and sample["role"] == "executor":
            texts[sample["problem_id"]][sample["sample_index"]] = sample["text"]
    out: tuple[list, list, list, list] = ([], [], [], [])
    for row in read_jsonl(run_dir / "problems.jsonl"):
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
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from cope.baselines.encoder import SentenceEncoder
    from cope.cli import CONFIG_DIR
    from cope.records import write_atomic
    from cope.runner import run
    from cope.tasks import create_task
    from cope.tasks.base import select

    if not any(o.split("=", 1)[0].lstrip("+~") == "method" for o in overrides):
        overrides = ["method=frugalgpt", *overrides]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
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
    from cope.errors import CopeError

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
