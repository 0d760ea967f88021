"""FrugalGPT's scorer on real embeddings (the packaged all-MiniLM-L6-v2): training through the
runner on GSM8K problems, scoring, and the run that uses it."""

import json
from types import SimpleNamespace

import pytest

from cope.backends.scripted import ScriptedBackend
from cope.baselines.encoder import SentenceEncoder
from cope.baselines.frugal_scorer import FORMAT, FrugalScorer, fit, scorer_path
from cope.baselines.frugalgpt import main, train
from cope.errors import ConfigError
from cope.runner import run
from cope.tasks.math_data import GSM8K

from conftest import compose_config

pytest.importorskip("sentence_transformers")

GOLD = {p.question: p.gold for p in GSM8K(SimpleNamespace(source=None)).load()}
TRAIN = ["task.offset=1119", "task.limit=16"]  # the last problems of the test split


def careful(gold):
    return ("Let me work through this carefully, one quantity at a time, and check each "
            f"step against the problem. Therefore, the final answer is: $\\boxed{{{gold}}}$.")


def sloppy(gold):
    return f"hmm not sure lol, probably like {int(gold) + 1}? whatever"


def respond(request):
    """The small model is careful and right on problems of even index, sloppy and wrong on
    the others; the large model is always right."""
    question = request.messages[-1][1].removeprefix("Problem:\n")
    gold = GOLD[question]
    if "1.5b" in request.model_identity:
        return careful(gold)
    index = list(GOLD).index(question)
    return careful(gold) if index % 2 == 0 else sloppy(gold)


@pytest.fixture
def scripted():
    return {"scripted": ScriptedBackend(respond)}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("COPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def base(tmp_path, name):
    return [f"run_dir={tmp_path / name}", f"cache.path={tmp_path / 'cache.sqlite'}",
            "progress=false", "backend.name=scripted", "pair=qwen-coder-cpu"]


def test_train_then_run_frugalgpt(tmp_path, home, scripted):
    path = train(base(tmp_path, "train") + TRAIN, backends=scripted)
    assert path == home / "scorers" / "frugalgpt-gsm8k-qwen-coder-0_5b.json"
    assert path == scorer_path("frugalgpt-gsm8k-qwen-coder-0_5b.json")
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and len(data["weights"]) == 2 * 384
    training = data["training"]
    assert training["problem_ids"] == [str(i) for i in range(1119, 1135)]
    assert (training["n"], training["n_right"]) == (16, 8)
    assert training["model"] == "qwen-coder-0_5b" and training["stage"] == "small"
    # careful and sloppy answers are told apart on held-out folds too, not just fitted
    assert training["majority_accuracy"] == 0.5 and training["cross_validated_auc"] > 0.9
    # the training run answered with the cheap tier alone
    train_metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert train_metrics["resolved_by_stage"] == {"small": 16} and train_metrics["large_calls"] == 0

    scorer = FrugalScorer.from_file(path)
    question = next(q for q in GOLD if GOLD[q] == "18")
    right, wrong = scorer.probabilities([question, question], [careful("18"), sloppy("18")])
    assert right > 0.5 > wrong

    result = run(compose_config(base(tmp_path, "eval") + ["method=frugalgpt", "task.limit=6"]),
                 scripted)
    rows = result.problems
    assert [r["resolved_stage"] for r in rows] == ["small", "large"] * 3
    assert all(r["correct"] for r in rows)
    assert [r["stages"][0]["consensus"] > 0.5 for r in rows] == [True, False] * 3
    assert result.metrics["large_calls"] == 3


def test_a_run_on_the_training_problems_is_refused(tmp_path, home, scripted):
    train(base(tmp_path, "train") + TRAIN, backends=scripted)
    cfg = compose_config(base(tmp_path, "eval") + ["method=frugalgpt", "task.offset=1130"])
    with pytest.raises(ConfigError, match="trained on 5 of the problems this run evaluates"):
        run(cfg, scripted)


def test_training_needs_right_and_wrong_answers(tmp_path, home):
    every_answer_wrong = {"scripted": ScriptedBackend(lambda r: "$\\boxed{-1}$")}
    with pytest.raises(ConfigError, match="All 4 training answers were wrong"):
        train(base(tmp_path, "train") + ["task.offset=1119", "task.limit=4"],
              backends=every_answer_wrong)


def test_a_scorer_of_another_encoder_is_refused(tmp_path):
    encoder = SentenceEncoder.shared()
    data = fit(["a", "b", "c", "d"], ["yes", "no", "yes", "no"], [True, False, True, False], encoder)
    data["encoder"] = dict(data["encoder"], sha256="0" * 64)
    path = tmp_path / "scorer.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="Retrain the scorer"):
        FrugalScorer.from_file(path)


def test_command_line_reports_errors_without_a_traceback(tmp_path, home, capsys):
    assert main(["train", "method=cope", *base(tmp_path, "t")]) == 2
    assert "no stage with confidence=scorer; name one with --stage" in capsys.readouterr().err
    assert main(["train", "--stage", "s9", "method=cope", *base(tmp_path, "t")]) == 2
    assert "Unknown stage 's9'" in capsys.readouterr().err


def test_too_few_of_a_kind_for_cross_validation():
    data = fit(["a", "b", "c"], ["yes", "no", "no"], [True, False, False], SentenceEncoder.shared())
    training = data["training"]
    assert training["cross_validated_auc"] is None
    assert training["majority_accuracy"] == pytest.approx(2 / 3)
