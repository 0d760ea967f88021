"""FrugalGPT's learned scorer (Chen et al. 2023): accept the cheap tier's answer, or escalate.

The scorer is a logistic regression over sentence embeddings (all-MiniLM-L6-v2, packaged) of
the question and of the cheap tier's response, trained on problems the evaluation does not
use, labelled by whether the cheap tier was right. A stage with `confidence: scorer` takes
the scorer's probability as its confidence. A scorer file is JSON: weights, the encoder's
identity and the ids of its training problems, so a run on any of those problems is
refused. `python -m cope.baselines.frugalgpt train ...` trains one (cope/baselines/frugalgpt.py).
numpy and scikit-learn are imported where they are used: they come with the frugalgpt extra.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from cope.baselines.encoder import SentenceEncoder
from cope.errors import ConfigError
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
        self._judged: dict[tuple[str, str], float] = {}

    @classmethod
    def from_file(cls, path: Path, encoder=None) -> "FrugalScorer":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg}); retrain the scorer.") from None
        return cls(data, encoder or SentenceEncoder.shared(), path)

    def probabilities(self, questions: list[str], responses: list[str]) -> list[float]:
        logits = features(self.encoder, questions, responses) @ self.weights + self.bias
        return [1.0 / (1.0 + math.exp(-float(z))) for z in logits]

    def probability(self, question: str, response: str) -> float:
        # remembered: a calibration's surveys judge the same answers once per structure
        key = (question, response)
        if key not in self._judged:
            self._judged[key] = self.probabilities([question], [response])[0]
        return self._judged[key]


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


@lru_cache(maxsize=16)
def _loaded(path: Path, mtime_ns: int, size: int) -> FrugalScorer:
    """A scorer file, read once per process while it is unchanged (its judgements with it)."""
    return FrugalScorer.from_file(path)


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
        stat = path.stat()
        scorer = _loaded(path, stat.st_mtime_ns, stat.st_size)
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
