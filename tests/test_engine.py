"""The stage engine with a scripted backend: escalation, plan passing, roles, stage lists."""

import pytest

from cope.cache import GenerationCache
from cope.tasks.math import GOAL_PLANNER, GUIDELINE_PLANNER

from scripted import PROBLEM, build, cope_responder, cope_stages, solve


PLANNERS = (GOAL_PLANNER, GUIDELINE_PLANNER)


def agree(k, n=8, answer="9"):
    """k samples give `answer`; the others give distinct answers of their own."""
    return [answer] * k + [str(100 + i) for i in range(n - k)]


@pytest.mark.parametrize(
    "k, op, resolved",
    [(7, "gt", "s1"), (6, "gt", "s2"), (6, "ge", "s1"), (5, "ge", "s2")],
)
def test_stage1_threshold(k, op, resolved):
    """tau1 = 0.75 with n = 8: 6 votes are exactly 0.75, which gt (>) rejects and ge (>=) accepts."""
    method, _ = build(cope_stages(), cope_responder(s1=agree(k), s2=agree(8)), threshold_op=op)
    result = solve(method)
    assert result.resolved_stage == resolved
    assert result.stages[0].vote.confidence == k / 8


@pytest.mark.parametrize(
    "k, op, resolved",
    [(5, "gt", "s2"), (4, "gt", "s3"), (4, "ge", "s2"), (3, "ge", "s3")],
)
def test_stage2_threshold(k, op, resolved):
    method, _ = build(cope_stages(), cope_responder(s1=agree(4), s2=agree(k, answer="7")),
                      threshold_op=op)
    result = solve(method)
    assert result.resolved_stage == resolved
    assert result.answer == ("7" if resolved == "s2" else "9")


def test_threshold_overrides_are_config():
    stages = cope_stages("method.tau1=0.5")
    method, _ = build(stages, cope_responder(s1=agree(5), s2=agree(8)))
    assert solve(method).resolved_stage == "s1"


def test_abstentions_count_in_n_but_do_not_vote():
    s1 = ["9", "9", "9", "9", "9", "9", None, None]
    method, _ = build(cope_stages(), cope_responder(s1=s1, s2=agree(8)))
    result = solve(method)
    vote = result.stages[0].vote
    assert vote.confidence == 6 / 8
    assert vote.answers.count(None) == 2
    assert result.resolved_stage == "s2"


def test_all_abstaining_stage_escalates_and_final_abstention_is_wrong():
    method, _ = build(cope_stages(), cope_responder(s1=[None] * 8, s2=[None] * 8, s3=None))
    result = solve(method)
    assert [s.accepted for s in result.stages] == [False, False, True]
    assert result.answer is None
    assert not InlineAnswer.correct(result.answer)


class InlineAnswer:
    @staticmethod
    def correct(answer):
        from cope.tasks.math import equivalent

        return equivalent(answer, PROBLEM.gold)


def test_plan_passed_on_is_one_that_gave_the_majority_and_stage2_sees_both_plans():
    s1 = ["9", "4", "9", "4", "4", "9", "9", "1"]  # majority 9 (4 of 8): escalate
    majority = {0, 2, 5, 6}
    method, backend = build(cope_stages(), cope_responder(s1=s1, s2=agree(2)))
    result = solve(method)
    g_s = result.stages[0].passed_on
    assert len(g_s) == 1 and g_s[0].kind == "goal"
    chosen = int(g_s[0].text.split("#")[1])
    assert chosen in majority
    s2_prompts = [r.messages[-1][1] for r in backend.requests
                  if r.model_identity == "small" and "Guideline:" in r.messages[-1][1]]
    assert len(s2_prompts) == 8
    for prompt in s2_prompts:
        assert f"Goal: goal by small #{chosen}" in prompt
        assert "Guideline: guideline by large #0" in prompt
    # stage 3: the large model executes greedily with g^L only
    s3 = [r for r in backend.requests if r.model_identity == "large" and "Problem:" in r.messages[-1][1]
          and r.messages[0][1].startswith("Solve")]
    assert len(s3) == 1
    assert s3[0].params.temperature == 0.0
    assert "Guideline: guideline by large #0" in s3[0].messages[-1][1]
    assert "Goal:" not in s3[0].messages[-1][1]


def test_plan_choice_depends_on_the_problem():
    from cope.tasks.base import Problem

    s1 = ["9", "9", "9", "9", "4", "4", "4", "1"]
    chosen = set()
    for k in range(10):
        problem = Problem(id=f"q{k}", question=PROBLEM.question, gold="9")
        method, _ = build(cope_stages(), cope_responder(s1=s1, s2=agree(8)))
        chosen.add(solve(method, problem).stages[0].passed_on[0].slot)
    assert chosen <= {0, 1, 2, 3} and len(chosen) > 1


def test_plan_choice_is_seeded_by_run_seed_and_problem():
    s1 = ["9", "9", "9", "9", "4", "4", "4", "1"]
    chosen = []
    for seed in range(12):
        method, _ = build(cope_stages(), cope_responder(s1=s1, s2=agree(8)), seed=seed)
        chosen.append(solve(method).stages[0].passed_on[0].text)
    again, _ = build(cope_stages(), cope_responder(s1=s1, s2=agree(8)), seed=3)
    assert solve(again).stages[0].passed_on[0].text == chosen[3]
    indices = {int(text.split("#")[1]) for text in chosen}
    assert indices <= {0, 1, 2, 3}
    assert len(indices) > 1  # the seed changes the choice


def test_a_tie_is_broken_by_the_seeded_generator_and_counts_half():
    s1 = ["4", "9", "4", "9", "4", "9", "4", "9"]
    winners = set()
    for seed in range(10):
        method, _ = build(cope_stages(), cope_responder(s1=s1, s2=agree(8)), seed=seed)
        stage = solve(method).stages[0]
        assert stage.vote.confidence == 0.5 and stage.vote.tied == 2
        winners.add(stage.vote.answer)
        # g^S comes from the plans behind the winning answer
        expected = {0, 2, 4, 6} if stage.vote.answer == "4" else {1, 3, 5, 7}
        assert stage.passed_on[0].slot in expected
    assert winners == {"4", "9"}


def test_votes_by_equivalence_not_string():
    s1 = ["9", "9.0", "\\frac{18}{2}", "9.00", "4", "9", "9", "4"]
    method, _ = build(cope_stages(), cope_responder(s1=s1, s2=agree(8)))
    result = solve(method)
    assert result.stages[0].vote.confidence == 6 / 8


def test_reversed_roles_are_config():
    stages = cope_stages("method.stages.s1.planner=large", "method.stages.s1.executor=large",
                         "method.stages.s2.planner=small", "method.stages.s2.executor=large")
    seen = []

    def respond(request):
        system = request.messages[0][1]
        seen.append((request.model_identity, "plan" if system in PLANNERS else "exec"))
        return "$\\boxed{9}$" if system not in PLANNERS else "a plan"

    method, _ = build(stages, respond)
    result = solve(method)
    assert result.resolved_stage == "s1"
    assert set(seen) == {("large", "plan"), ("large", "exec")}


def test_reversed_roles_reach_stage_two():
    """Stage 2 with the small model planning and the large one executing."""
    stages = cope_stages("method.stages.s2.planner=small", "method.stages.s2.executor=large",
                         "method.stages.s2.votes=2")
    seen = []

    def respond(request):
        system, user = request.messages[0][1], request.messages[-1][1]
        if system in PLANNERS:
            seen.append((request.model_identity, "guideline" if "coach" in system else "goal"))
            return f"plan by {request.model_identity}"
        if "Guideline:" in user:
            seen.append((request.model_identity, "s2 exec"))
            return "$\\boxed{9}$"
        return f"$\\boxed{{{100 + request.sample_index}}}$"  # stage 1 never agrees

    method, _ = build(stages, respond)
    result = solve(method)
    assert result.resolved_stage == "s2" and result.answer == "9"
    assert ("small", "guideline") in seen and ("large", "guideline") not in seen
    assert seen.count(("large", "s2 exec")) == 2


def test_truncated_stage_list_last_stage_always_answers():
    stages = cope_stages(order=["s1", "s2"])
    s2 = ["7", "4", "4", "1", "2", "3", "5", "6"]
    method, _ = build(stages, cope_responder(s1=agree(2), s2=s2))
    result = solve(method)
    assert result.resolved_stage == "s2"
    assert result.answer == "4"  # the majority of stage 2, despite its low consensus
    assert result.stages[-1].vote.confidence == 2 / 8


def test_s1_then_s3_carries_the_small_plan():
    stages = cope_stages(order=["s1", "s3"])
    method, backend = build(stages, cope_responder(s1=agree(3)))
    result = solve(method)
    assert result.resolved_stage == "s3"
    large_exec = [r for r in backend.requests if r.model_identity == "large"]
    assert len(large_exec) == 1
    assert "Goal: goal by small #" in large_exec[0].messages[-1][1]


def test_single_stage_without_plan():
    stages = cope_stages("method=small_majority", "method.votes=4")
    method, backend = build(stages, cope_responder(s1=agree(3, n=4)))
    result = solve(method)
    assert result.resolved_stage == "solve" and result.answer == "9"
    assert len(backend.requests) == 4
    assert all("plan" not in r.messages[-1][1] for r in backend.requests)


def test_plan_type_both_and_none_are_config():
    stages = cope_stages("method.stages.s1.plan=both", "method.votes=2")
    method, backend = build(stages, cope_responder(s1=agree(2, n=2), s2=agree(2, n=2)))
    solve(method)
    s1_exec = [r.messages[-1][1] for r in backend.requests if r.messages[0][1].startswith("Solve")]
    assert all("Goal:" in p and "Guideline:" in p for p in s1_exec)

    stages = cope_stages("method.stages.s1.plan=none", "method.stages.s1.planner=null")
    method, backend = build(stages, cope_responder(s1=agree(8)))
    solve(method)
    assert all("plan" not in r.messages[-1][1] for r in backend.requests)


def test_smaller_vote_count_reuses_samples_of_a_larger_one(tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    method, first = build(cope_stages("method.votes=4"), cope_responder(s1=agree(4, n=4)), cache=cache)
    solve(method)
    assert len(first.requests) == 8  # 4 plans + 4 executions
    method, second = build(cope_stages("method.votes=8"), cope_responder(s1=agree(8)), cache=cache)
    solve(method)
    assert len(second.requests) == 8  # only samples 4..7 of plans and executions are new
    assert sorted(r.sample_index for r in second.requests) == [4, 4, 5, 5, 6, 6, 7, 7]
