"""The baselines' decision rules on the stage engine, with a scripted backend: MoT cascade
(vote, verify), ABC and FrugalGPT's scorer rule; accept or escalate, and costs per stage."""

import asyncio
import json

import pytest

from cope.backends.scripted import ScriptedBackend
from cope.cache import GenerationCache
from cope.engine import CascadeMethod, Stage
from cope.errors import ConfigError
from cope.generator import Generator, ModelBinding, RetaggingGenerator
from cope.runner import run
from cope.tasks.base import Problem, Task
from cope.tasks.math import EXECUTOR, PROGRAM_EXECUTOR

from conftest import compose_config
from scripted import PROBLEM, InlineMath, boxed


def program(answer):
    if answer is None:
        return "```python\nraise RuntimeError('stuck')\n```"
    return f"```python\nresult = {answer}\nprint(result)\n```"


def responder(cot=(), pot=(), large="9", tiers=None):
    """Small CoT sample i answers cot[i], small PoT sample i prints pot[i]; the large model
    answers `large`; `tiers` maps another alias to its per-sample answers."""

    def respond(request):
        system = request.messages[0][1]
        i = request.sample_index
        if request.model_identity == "large":
            return boxed(large)
        if tiers and request.model_identity in tiers:
            return boxed(tiers[request.model_identity][i])
        if system == PROGRAM_EXECUTOR:
            return program(pot[i])
        assert system == EXECUTOR
        return boxed(cot[i])

    return respond


def stages_of(*overrides):
    cfg = compose_config(list(overrides))
    return [Stage.from_config(n, cfg.method.stages[n]) for n in cfg.method.order]


def build(stages, respond, roles=("small", "large"), scorers=None, cache=None, task=None):
    backend = ScriptedBackend(respond)
    bindings = {alias: ModelBinding(alias, alias, backend) for alias in roles}
    generator = Generator(bindings, cache if cache is not None else GenerationCache(None, "off"))
    method = CascadeMethod("test", stages, {r: r for r in roles}, task or InlineMath(None),
                           generator, scorers=scorers)
    return method, backend


def solve(method, problem=PROBLEM):
    return asyncio.run(method.solve(problem))


# --- MoT cascade, vote -------------------------------------------------------------------

def test_mot_vote_alternates_cot_and_pot_samples():
    method, backend = build(stages_of("method=mot_vote"),
                            responder(cot=["9"] * 4, pot=["9"] * 4))
    result = solve(method)
    small = [r for r in backend.requests if r.model_identity == "small"]
    kinds = [(r.messages[0][1] == PROGRAM_EXECUTOR, r.sample_index) for r in small]
    assert sorted(kinds) == [(False, i) for i in range(4)] + [(True, i) for i in range(4)]
    assert all(r.params.temperature == 0.4 for r in small)
    stage = result.stages[0]
    assert stage.styles == ["cot", "pot"] * 4
    assert stage.to_json()["confidence_rule"] == "consensus"
    assert result.resolved_stage == "mot" and result.answer == "9"


@pytest.mark.parametrize("cot, pot, resolved, confidence", [
    (["9", "9", "9", "9"], ["9", "9", "9", "4"], "mot", 7 / 8),
    (["9", "9", "9", "1"], ["9", "9", "4", "5"], "large", 5 / 8),  # 5/8 is not above 0.75
    (["9", "9", "9", "9"], [None] * 4, "large", 4 / 8),  # crashed programs abstain
])
def test_mot_vote_accepts_on_mixed_consensus(cot, pot, resolved, confidence):
    method, _ = build(stages_of("method=mot_vote"), responder(cot=cot, pot=pot, large="7"))
    result = solve(method)
    assert result.resolved_stage == resolved
    assert result.stages[0].vote.confidence == confidence
    assert result.answer == ("9" if resolved == "mot" else "7")


def test_mot_vote_threshold_is_config():
    method, _ = build(stages_of("method=mot_vote", "method.tau1=0.5"),
                      responder(cot=["9", "9", "9", "1"], pot=["9", "9", "4", "5"]))
    assert solve(method).resolved_stage == "mot"


def test_a_mixed_stage_with_fewer_votes_reuses_the_samples_of_more(tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    answers = responder(cot=["9"] * 4, pot=["9"] * 4)
    method, first = build(stages_of("method=mot_vote", "method.votes=8"), answers, cache=cache)
    solve(method)
    method, second = build(stages_of("method=mot_vote", "method.votes=4"), answers, cache=cache)
    assert solve(method).stages[0].vote.confidence == 1.0
    assert len(first.requests) == 8 and second.requests == []


# --- MoT cascade, verify -----------------------------------------------------------------

@pytest.mark.parametrize("cot, pot, resolved", [
    (["9", "9", "9", "1"], ["9", "9", "4", "5"], "mot"),  # both majorities 9; consensus only 5/8
    (["9", "9", "9", "9"], ["7", "7", "7", "7"], "large"),  # unanimous each, but they disagree
    (["9", "9", "9", "9"], [None] * 4, "large"),  # no PoT answer to agree with
    (["9.0", "9", "1", "9"], ["\\frac{18}{2}", "9", "3", "5"], "mot"),  # equivalent answers agree
])
def test_mot_verify_accepts_when_cot_and_pot_majorities_agree(cot, pot, resolved):
    method, backend = build(stages_of("method=mot_verify"), responder(cot=cot, pot=pot, large="7"))
    result = solve(method)
    stage = result.stages[0]
    assert result.resolved_stage == resolved
    assert stage.vote.confidence == (1.0 if resolved == "mot" else 0.0)
    assert stage.to_json()["confidence_rule"] == "agreement"
    large_calls = [r for r in backend.requests if r.model_identity == "large"]
    assert len(large_calls) == (0 if resolved == "mot" else 1)
    if resolved == "mot":
        assert result.answer in ("9", "9.0")
        # the answer is backed by the CoT and PoT samples that gave it
        backing = {i for i, a in enumerate(stage.vote.answers)
                   if a is not None and a.replace(".0", "") in ("9", "\\frac{18}{2}")}
        assert set(stage.vote.support) == backing


# --- ABC ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tiny, small, resolved", [
    (["9", "9", "9"], ["1", "2", "3"], "tiny"),
    (["9", "9", "4"], ["9", "9", "9"], "small"),
    (["9", "9", "4"], ["9", "9", "4"], "large"),
    ([None, None, None], ["9", None, "9"], "large"),  # an abstention breaks unanimity
])
def test_abc_tier_answers_when_its_samples_agree(tiny, small, resolved):
    stages = stages_of("method=abc", "pair=tiers-cpu")
    answers = responder(large="7", tiers={"tiny": tiny, "small": small})
    backend = ScriptedBackend(answers)
    roles = {"tiny": "tiny", "small": "small", "large": "large"}
    bindings = {alias: ModelBinding(alias, alias, backend) for alias in roles}
    method = CascadeMethod("abc", stages, roles, InlineMath(None),
                           Generator(bindings, GenerationCache(None, "off")), threshold_op="ge")
    result = solve(method)
    assert result.resolved_stage == resolved
    assert [s.name for s in result.stages] == ["tiny", "small", "large"][:len(result.stages)]
    calls = [r.model_identity for r in backend.requests]
    assert calls.count("tiny") == 3
    assert calls.count("small") == (0 if resolved == "tiny" else 3)
    assert calls.count("large") == (1 if resolved == "large" else 0)


def test_abc_costs_are_accounted_per_tier(make_config):
    result = run(make_config("backend.name=scripted", "method=abc", "pair=tiers-cpu",
                             "task.limit=6"))
    m = result.metrics
    assert set(m["resolved_by_stage"]) == {"tiny", "small", "large"}
    assert sum(m["resolved_by_stage"].values()) == 6
    # the tiny and small tiers are free; the large tier is paid only where it ran
    for row in result.problems:
        assert (row["cost_usd"] > 0) == (row["resolved_stage"] == "large")
        assert row["cost"]["by_stage_usd"].get("tiny", 0) == 0
        assert row["cost"]["by_stage_usd"].get("small", 0) == 0
    assert m["cost_usd_per_million_by_stage"].get("large", 0) == pytest.approx(
        m["cost_usd_per_million"])
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["model"] for s in samples if s["stage"] == "tiny"} == {"smollm2-135m"}
    assert {s["style"] for s in samples} == {"cot"}


def test_mot_costs_are_accounted_per_stage(make_config):
    result = run(make_config("backend.name=scripted", "method=mot_vote", "task.limit=4"))
    m = result.metrics
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    mot = [s for s in samples if s["stage"] == "mot"]
    assert sorted(s["style"] for s in mot if s["problem_id"] == "0") == ["cot"] * 4 + ["pot"] * 4
    assert m["calls_by_role"]["small"] == len(mot)
    assert m["large_calls"] == m["resolved_by_stage"]["large"]
    paid = sum(s["cost_usd"] for s in samples if s["stage"] == "large")
    assert m["cost_usd_total"] == pytest.approx(paid)


# --- FrugalGPT's rule ---------------------------------------------------------------------

class FixedScorer:
    def __init__(self, probability):
        self.value = probability
        self.seen = []

    def probability(self, question, response):
        self.seen.append((question, response))
        return self.value


@pytest.mark.parametrize("probability, resolved", [(0.9, "small"), (0.5, "large"), (0.2, "large")])
def test_frugalgpt_accepts_when_the_scorer_is_confident(probability, resolved):
    scorer = FixedScorer(probability)
    method, backend = build(stages_of("method=frugalgpt"), responder(cot=["4"], large="9"),
                            scorers={"small": scorer})
    result = solve(method)
    assert result.resolved_stage == resolved
    assert result.stages[0].vote.confidence == probability
    assert result.stages[0].to_json()["confidence_rule"] == "scorer"
    # the scorer judged the question and the small model's response
    assert scorer.seen == [(PROBLEM.question, boxed("4"))]
    assert result.answer == ("4" if resolved == "small" else "9")
    assert sum(r.model_identity == "large" for r in backend.requests) == (resolved == "large")


def test_a_scored_stage_keeps_its_scorer_when_parts_of_a_problem_retag_samples():
    # agent steps and chat turns run the method through with_generator
    scorer = FixedScorer(0.9)
    method, backend = build(stages_of("method=frugalgpt"), responder(cot=["4"], large="9"),
                            scorers={"small": scorer})
    seen = []
    method.generator.on_sample = lambda tag, generation: seen.append(tag)
    step = method.with_generator(RetaggingGenerator(method.generator, "episode-7", step=3))
    result = solve(step)
    assert result.resolved_stage == "small" and scorer.seen == [(PROBLEM.question, boxed("4"))]
    assert [(tag.problem_id, tag.extra["step"]) for tag in seen] == [("episode-7", 3)]


def test_a_scored_stage_without_a_scorer_is_refused():
    with pytest.raises(ConfigError, match="no scorer was loaded"):
        build(stages_of("method=frugalgpt"), responder(cot=["4"]))


def test_a_missing_scorer_file_names_the_training_command(make_config):
    with pytest.raises(ConfigError) as info:
        run(make_config("backend.name=scripted", "method=frugalgpt", "task.limit=2"))
    message = str(info.value)
    assert "no scorer at" in message and "frugalgpt-gsm8k-qwen-coder-0_5b.json" in message
    assert "python -m cope.baselines.frugalgpt train task=gsm8k" in message


def test_a_task_without_program_of_thought_refuses_pot_stages():
    class CotOnly(Task):
        name = "cot_only"

        def load(self):
            return [PROBLEM]

        plan_messages = execute_messages = extract = is_correct = None

    with pytest.raises(ConfigError, match="offers cot"):
        build(stages_of("method=mot_vote"), responder(), task=CotOnly(None))
    with pytest.raises(ConfigError, match="no program-of-thought prompts"):
        CotOnly(None).program_messages(Problem("p", "q", "1"), [])
