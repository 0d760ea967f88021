"""Open-ended chat (MT-Bench): perplexity confidence, two turns through the cascade, the
pairwise judge's verdicts and tallies, and config checks. A scripted backend stands in for
the models; tests/test_mt_bench_llamacpp.py runs the real tiny model."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from cope.results.runs import load_run, run_summary
from cope.confidence import perplexity as ppl
from cope.backends.scripted import ScriptedBackend
from cope.cache import GenerationCache
from cope.config import validate
from cope.engine import CascadeMethod, Stage
from cope.errors import BackendError, ConfigError
from cope.generator import Generator, ModelBinding
from cope.judge import combine, judge_messages, judge_runs, outcome, parse_verdict, tally
from cope.runner import run
from cope.tasks.base import Problem
from cope.tasks.open_ended import EXECUTOR, MTBench, TurnSolver

from conftest import compose_config

QUESTION = Problem(id="q1", question="Write a haiku about rain.", gold="", index=0,
                   meta={"turns": ["Write a haiku about rain.", "Now make it about snow."],
                         "category": "writing", "reference": None})


# --- perplexity ---

def test_perplexity_is_exp_of_the_mean_negative_log_likelihood():
    assert ppl.mean_nll([-0.5, -1.5]) == pytest.approx(1.0)
    assert ppl.perplexity([-0.5, -1.5]) == pytest.approx(math.e)
    assert ppl.perplexity([0.0, 0.0]) == pytest.approx(1.0)  # certain tokens
    assert ppl.perplexity([math.log(0.25)] * 3) == pytest.approx(4.0)
    assert ppl.perplexity([]) is None and ppl.perplexity(None) is None


def test_the_lowest_perplexity_is_chosen_and_ties_are_drawn():
    assert ppl.lowest([3.0, None, 1.2, 2.0]) == 2
    assert ppl.lowest([None, None]) is None
    draws = {ppl.lowest([1.5, 2.0, 1.5], random.Random(seed)) for seed in range(20)}
    assert draws == {0, 2}
    assert ppl.within(1.5, 1.5) and not ppl.within(1.51, 1.5)
    assert ppl.within(9.0, None) and not ppl.within(None, 2.0)


# --- the cascade on open-ended turns, with scripted texts and logprobs ---

def scripted_chat(s1, s2, s3=1.3):
    """Executors answer 'candidate <stage> <i>'; the per-token logprob of a candidate is
    chosen so that its perplexity is s1[i] / s2[i] (small model) or s3 (large model)."""

    def respond(request):
        system, user = request.messages[0][1], request.messages[-1][1]
        if system != EXECUTOR:
            return f"plan by {request.model_identity} #{request.sample_index}"
        large = request.model_identity == "large" or request.model_identity.endswith("1.5b")
        stage = "s3" if large else (
            "s2" if "Guideline:" in user else "s1")
        turn = sum(role == "user" for role, _ in request.messages)
        return f"turn {turn} {stage} candidate {request.sample_index}"

    def logprobs(request, text):
        _, stage, _, i = text.split()[1:]
        target = {"s1": s1, "s2": s2}.get(stage, [s3])[int(i) if stage != "s3" else 0]
        return [-math.log(target)] * 4

    return respond, logprobs


def build_chat(s1, s2, s3=1.3, limits=(1.5, 1.5), votes=3):
    cfg = compose_config(["task=mt_bench", f"method.votes={votes}",
                          f"method.max_perplexity1={limits[0]}",
                          f"method.max_perplexity2={limits[1]}"])
    stages = [Stage.from_config(n, cfg.method.stages[n]) for n in cfg.method.order]
    respond, logprobs = scripted_chat(s1, s2, s3)
    backend = ScriptedBackend(respond, logprobs=logprobs)
    generator = Generator({a: ModelBinding(a, a, backend) for a in ("small", "large")},
                          GenerationCache(None, "off"))
    task = MTBench(cfg.task)
    method = CascadeMethod("cope", stages, {"small": "small", "large": "large"}, task, generator)
    return TurnSolver(method, task), backend


def test_a_stage_answers_with_its_lowest_perplexity_candidate_when_low_enough():
    solver, _ = build_chat(s1=[3.0, 1.2, 2.0], s2=[1.1, 1.1, 1.1])
    result = asyncio.run(solver.solve(QUESTION))
    turn1 = result.extra["turns"][0]
    assert turn1["resolved_stage"] == "s1"
    assert turn1["answer"] == "turn 1 s1 candidate 1"
    assert turn1["perplexity"] == pytest.approx(1.2)
    record = turn1["stages"][0]
    assert record["confidence_rule"] == "perplexity"
    assert record["perplexities"] == pytest.approx([3.0, 1.2, 2.0])
    assert record["consensus"] == pytest.approx(1 / 1.2)  # geometric mean token probability
    assert record["support"] == [1]


def test_above_the_threshold_a_turn_escalates_and_the_last_stage_always_answers():
    solver, backend = build_chat(s1=[3.0, 1.6, 2.0], s2=[1.7, 1.9, 1.8], s3=5.0)
    result = asyncio.run(solver.solve(QUESTION))
    for turn in result.extra["turns"]:
        assert [s["stage"] for s in turn["stages"]] == ["s1", "s2", "s3"]
        assert [s["accepted"] for s in turn["stages"]] == [False, False, True]
        assert turn["resolved_stage"] == "s3" and turn["perplexity"] == pytest.approx(5.0)
    assert result.extra["turns_resolved_by_stage"] == {"s1": 0, "s2": 0, "s3": 2}
    assert result.resolved_stage == "s3"
    # only the executors of perplexity stages ask for logprobs
    executors = [r for r in backend.requests if r.messages[0][1] == EXECUTOR]
    planners = [r for r in backend.requests if r.messages[0][1] != EXECUTOR]
    assert executors and all(r.want_logprobs for r in executors)
    assert planners and not any(r.want_logprobs for r in planners)


def test_stage_two_gets_the_plan_of_the_chosen_candidate():
    solver, backend = build_chat(s1=[3.0, 1.6, 2.0], s2=[1.2, 1.9, 1.8])
    asyncio.run(solver.solve(QUESTION))
    s2_prompts = [r.messages[-1][1] for r in backend.requests
                  if r.messages[0][1] == EXECUTOR and "Guideline:" in r.messages[-1][1]]
    # g^S is the goal behind s1's lowest-perplexity candidate (sample 1)
    assert s2_prompts and all("Goal: plan by small #1" in p for p in s2_prompts)


def test_turn_two_sees_turn_one_and_its_chosen_answer_as_chat_history():
    solver, backend = build_chat(s1=[3.0, 1.2, 2.0], s2=[1.1, 1.1, 1.1])
    result = asyncio.run(solver.solve(QUESTION))
    assert result.extra["answers"] == ["turn 1 s1 candidate 1", "turn 2 s1 candidate 1"]
    turn2 = [r for r in backend.requests if r.messages[0][1] == EXECUTOR
             and r.messages[-1][1].startswith("Now make it about snow.")]
    assert turn2
    for request in turn2:
        assert [role for role, _ in request.messages] == ["system", "user", "assistant", "user"]
        assert request.messages[1][1] == "Write a haiku about rain."
        assert request.messages[2][1] == "turn 1 s1 candidate 1"
    planner = [r for r in backend.requests if r.messages[0][1] != EXECUTOR
               and "Now make it about snow." in r.messages[-1][1]]
    assert planner and all("turn 1 s1 candidate 1" in r.messages[-1][1] for r in planner)


def test_a_candidate_without_logprobs_is_an_error_not_a_silent_abstention():
    solver, _ = build_chat(s1=[1.2] * 3, s2=[1.2] * 3)
    solver.method.generator.bindings["small"].backend.logprobs = None
    with pytest.raises(BackendError, match="returned no logprobs"):
        asyncio.run(solver.solve(QUESTION))


# --- the judge ---

def test_verdicts_are_read_from_the_last_bracketed_letter():
    assert parse_verdict("A is more detailed.\n[[A]]") == "A"
    assert parse_verdict("Not [[B]] but rather [[C]]") == "C"
    assert parse_verdict("Assistant A is better.") is None
    assert parse_verdict("[A]") is None and parse_verdict("") is None


def test_position_swapped_outcomes_agree_or_tie():
    assert outcome("A", "candidate_first") == "win" and outcome("B", "baseline_first") == "win"
    assert outcome("B", "candidate_first") == "loss" and outcome("A", "baseline_first") == "loss"
    assert outcome("C", "baseline_first") == "tie" and outcome(None, "candidate_first") == "error"
    assert combine("win", "win") == "win" and combine("loss", "loss") == "loss"
    assert combine("win", "loss") == "tie" and combine("win", "tie") == "tie"  # position bias
    assert combine("win", "error") == "error"
    t = tally(["win", "win", "tie", "loss", "error"])
    assert (t["wins"], t["ties"], t["losses"], t["errors"]) == (2, 2, 1, 1)
    assert t["win_rate"] == pytest.approx(0.4) and t["win_rate_ties_half"] == pytest.approx(0.6)


def test_the_second_turn_prompt_shows_both_conversations_and_a_reference():
    messages = judge_messages(["Q1", "Q2"], ["a1", "a2"], ["b1", None], 2, ["r1", "r2"])
    system, user = messages[0][1], messages[1][1]
    assert "reference answer" in system.lower() and "[[C]]" in system
    assert "r2" in user and "r1" not in user
    assert user.index("Assistant A: a2") < user.index("Assistant B: b1")
    assert "Assistant B: (no answer)" in user


# --- runs and the judge end to end, scripted ---

def chat_backend():
    respond, logprobs = scripted_chat([1.3, 1.9, 2.4], [1.2, 1.4, 1.1], 1.1)
    return ScriptedBackend(respond, logprobs=logprobs)


def judge_backend(order_bias=False):
    """A judge that prefers the answer that came from stage s1 (COPE's early answers), or,
    with order_bias, always prefers assistant A."""

    def respond(request):
        user = request.messages[-1][1]
        if order_bias:
            return "A looks better. [[A]]"
        a = user.split("Assistant A")[-1].split("Assistant B")[0]
        b = user.split("Assistant B")[-1]
        if "s1 candidate" in a and "s1 candidate" not in b:
            return "[[A]]"
        if "s1 candidate" in b and "s1 candidate" not in a:
            return "[[B]]"
        return "Hard to say, no verdict here."

    return ScriptedBackend(respond)


@pytest.fixture
def two_runs(make_config, tmp_path, shared_data):
    common = ["task=mt_bench", f"task.source={shared_data}", "task.limit=2", "method.votes=3",
              "method.max_perplexity1=1.5", "method.max_perplexity2=1.3", "concurrency=1"]
    cope = run(make_config(*common, "method=cope"), backends={"llamacpp": chat_backend()})
    large = run(make_config(*common, "method=large", f"run_dir={tmp_path / 'large'}"),
                backends={"llamacpp": chat_backend()})
    return cope, large


def test_mt_bench_runs_record_both_turns(two_runs):
    cope, large = two_runs
    assert cope.metrics["accuracy"] is None and cope.metrics["n_turns"] == 4
    assert cope.metrics["turns_resolved_by_stage"] == {"s1": 4, "s2": 0, "s3": 0}
    assert cope.metrics["mean_perplexity_by_turn"] == {"1": pytest.approx(1.3),
                                                       "2": pytest.approx(1.3)}
    row = cope.problems[0]
    assert row["id"] == "81" and row["category"] == "writing"
    assert [t["turn"] for t in row["turns"]] == [1, 2] and len(row["answers"]) == 2
    samples = [json.loads(line) for line in
               (cope.run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["turn"] for s in samples} == {1, 2} and {s["problem_id"] for s in samples} == {"81", "82"}
    assert large.problems[0]["turns_resolved_by_stage"] == {"solve": 2}
    # open-ended answers are not judged by correctness: null, never false, and no accuracy
    assert all(row["correct"] is None for row in cope.problems)
    assert cope.metrics["n_correct"] is None
    summary = run_summary(load_run(cope.run_dir))
    assert summary["n_correct"] is None and summary["accuracy"] != summary["accuracy"]  # nan


def test_the_judge_tallies_both_orders_and_replays_from_the_cache(two_runs, make_config,
                                                                   tmp_path):
    cope, large = two_runs
    cache = f"cache.path={tmp_path / 'cache.sqlite'}"
    result, out = judge_runs(cope.run_dir, large.run_dir, [cache], alias="qwen-coder-1_5b",
                             backends={"llamacpp": judge_backend()})
    assert result["overall"] == {**result["overall"], "n": 4, "wins": 4, "ties": 0, "losses": 0}
    assert result["by_turn"]["1"]["wins"] == 2 and result["by_turn"]["2"]["wins"] == 2
    assert result["candidate_metrics"]["method"] == "cope"
    lines = (out / "judge_samples.jsonl").read_text().splitlines()
    assert len(lines) == 8  # 2 questions x 2 turns x 2 orders
    assert json.loads((out / "result.json").read_text())["overall"]["wins"] == 4
    assert not (out / "problems.jsonl").exists()  # not to be taken for a run by analysis

    # a judge that always says "A" wins in one order and loses in the other: all ties
    biased, _ = judge_runs(cope.run_dir, large.run_dir, [f"cache.path={tmp_path / 'other'}"],
                           alias="qwen-coder-1_5b",
                           out=tmp_path / "biased",
                           backends={"llamacpp": judge_backend(order_bias=True)})
    assert (biased["overall"]["wins"], biased["overall"]["ties"]) == (0, 4)

    # the baseline against itself: no verdicts to read, so every judgement is an error
    same, out_same = judge_runs(large.run_dir, large.run_dir, [cache], alias="qwen-coder-1_5b",
                                out=tmp_path / "same", backends={"llamacpp": judge_backend()})
    assert same["overall"]["errors"] == 4 and same["overall"]["ties"] == 4
    rows = [json.loads(line) for line in
            (out_same / "judgements.jsonl").read_text().splitlines()]
    assert rows[0]["turns"][0]["candidate_first"] == {"verdict": None, "outcome": "error"}

    # judging again reads the finished judgements back, with no model call
    replay_backend = judge_backend()
    again, _ = judge_runs(cope.run_dir, large.run_dir, [cache], alias="qwen-coder-1_5b",
                          backends={"llamacpp": replay_backend})
    assert again["overall"] == result["overall"] and replay_backend.requests == []
    with pytest.raises(ConfigError, match="other settings"):
        judge_runs(cope.run_dir, large.run_dir, [cache], alias="qwen-coder-1_5b", out=out,
                   max_tokens=64, backends={"llamacpp": replay_backend})


# --- configuration ---

def test_cope_on_mt_bench_uses_perplexity_stages():
    cfg = compose_config(["task=mt_bench"])
    validate(cfg)
    assert [cfg.method.stages[s].confidence for s in ("s1", "s2")] == ["perplexity"] * 2
    assert cfg.method.stages.s1.max_perplexity == cfg.method.max_perplexity1
    assert compose_config(["task=gsm8k"]).method.stages.s1.confidence == "consensus"


@pytest.mark.parametrize("overrides, message", [
    (["method.max_perplexity1=0.9"], "at least 1"),
    (["method.stages.s1.style=mixed"], "confidence=perplexity reads cot samples"),
    (["backend.name=scripted"], "reports none"),
    (["task.confidence=vote"], "task.confidence='vote'"),
])
def test_bad_perplexity_settings_fail_before_any_generation(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(["task=mt_bench", *overrides]))


def test_open_ended_answers_cannot_be_voted_on():
    cfg = compose_config(["task=mt_bench", "method=small_majority"])
    with pytest.raises(ConfigError, match="cannot be voted on"):
        validate(cfg)
    stages = [Stage.from_config(n, cfg.method.stages[n]) for n in cfg.method.order]
    generator = Generator({}, GenerationCache(None, "off"))
    with pytest.raises(ConfigError, match="cannot be voted on"):
        CascadeMethod("m", stages, {"small": "small"}, MTBench(cfg.task), generator)


def test_the_judge_command_takes_overrides_after_its_options(tmp_path, capsys):
    from cope.judge import main

    missing = tmp_path / "nothing"
    assert main([str(missing), "--against", str(missing), "--max-tokens", "8",
                 "cache.mode=off", "pair=tiny-cpu"]) == 2
    assert "not a run directory (no config.yaml)" in capsys.readouterr().err
