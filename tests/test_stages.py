"""Per-stage diagnostics on hand-made problem records (the format of problems.jsonl)."""

import pytest

from analysis.stages import calibration, carried_plan_effect, propagation, stage_table


def stage(name, answer, consensus, accepted, votes=8):
    return {"stage": name, "answer": answer, "consensus": consensus, "accepted": accepted,
            "votes": votes}


def problem(pid, *stages, gold="5", correct=None):
    last = stages[-1]
    return {"id": pid, "index": int(pid), "gold": gold, "answer": last["answer"],
            "correct": last["answer"] == gold if correct is None else correct,
            "resolved_stage": last["stage"],
            "stages": list(stages), "cost_usd": 0.0}


PROBLEMS = [
    problem("1", stage("s1", "3", 0.5, False), stage("s2", "5", 0.75, True)),
    problem("2", stage("s1", "4", 0.5, False), stage("s2", "4", 0.5, False),
            stage("s3", "5.0", 1.0, True, votes=1), correct=True),  # equivalent to the gold 5
    problem("3", stage("s1", "5", 0.625, False), stage("s2", "6", 0.375, False),
            stage("s3", "6", 1.0, True, votes=1)),
    problem("4", stage("s1", "5", 1.0, True)),
    problem("5", stage("s1", "7", 0.25, False), stage("s2", "8", 0.25, False),
            stage("s3", "9", 1.0, True, votes=1)),
]
RUN = {"label": "cope", "cell": {"task": "gsm8k", "order": ("s1", "s2", "s3")}, "problems": PROBLEMS}


def test_stage_table_counts_reached_resolved_and_accuracy_per_stage():
    rows = {row["stage"]: row for row in stage_table(RUN)}
    assert (rows["s1"]["reached"], rows["s1"]["resolved"]) == (5, 1)
    assert rows["s1"]["resolved_accuracy"] == 1.0
    assert rows["s1"]["stage_accuracy"] == pytest.approx(2 / 5)  # problems 3 and 4
    assert (rows["s2"]["reached"], rows["s2"]["resolved"], rows["s2"]["stage_accuracy"]) == (4, 1, 0.25)
    assert (rows["s3"]["reached"], rows["s3"]["resolved"]) == (3, 3)
    assert rows["s3"]["resolved_accuracy"] == pytest.approx(1 / 3)
    assert rows["s1"]["mean_consensus"] == pytest.approx((0.5 + 0.5 + 0.625 + 1 + 0.25) / 5)


def test_propagation_separates_recoveries_carried_errors_and_lost_answers():
    flows = propagation(RUN)
    assert flows["s1->s2"] == {"escalated": 4, "wrong_then_right": 1, "wrong_then_same_wrong": 1,
                               "wrong_then_other_wrong": 1, "right_then_wrong": 1,
                               "right_then_right": 0}
    assert flows["s2->s3"] == {"escalated": 3, "wrong_then_right": 1, "wrong_then_same_wrong": 1,
                               "wrong_then_other_wrong": 1, "right_then_wrong": 0,
                               "right_then_right": 0}


def test_calibration_bins_by_consensus_for_voting_stages_only():
    bins = {(b["stage"], b["consensus"]): (b["n"], b["accuracy"]) for b in calibration(RUN)}
    assert bins[("s1", 0.5)] == (2, 0.0)
    assert bins[("s1", 1.0)] == (1, 1.0)
    assert bins[("s1", 0.625)] == (1, 1.0)
    assert bins[("s2", 0.75)] == (1, 1.0)
    assert not any(stage == "s3" for stage, _ in bins)  # one vote: consensus says nothing


def test_carried_plan_effect_pairs_stage_two_with_and_without_the_stage_one_plan():
    s2s3 = {"label": "cope_s2s3", "cell": {"task": "gsm8k", "order": ("s2", "s3")}, "problems": [
        problem("1", stage("s2", "4", 0.5, False), stage("s3", "5", 1.0, True, votes=1)),
        problem("2", stage("s2", "5", 0.75, True)),
        problem("3", stage("s2", "5", 0.75, True)),
        problem("4", stage("s2", "5", 1.0, True)),  # resolved at S1 by COPE: not counted
    ]}  # problem 5 unfinished in S2+S3: not counted
    effect = carried_plan_effect(RUN, s2s3)
    assert effect["n"] == 3
    assert effect["s2_accuracy_with_s1_plan"] == pytest.approx(1 / 3)
    assert effect["s2_accuracy_without_s1_plan"] == pytest.approx(2 / 3)
    assert (effect["only_with_plan_right"], effect["only_without_plan_right"]) == (1, 2)
    assert effect["p_value"] == pytest.approx(1.0)


def test_other_task_families_are_refused():
    with pytest.raises(ValueError, match="math task"):
        stage_table({**RUN, "cell": {"task": "mbpp", "order": ("s1",)}})
