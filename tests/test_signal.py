"""The escalation signal's measures against hand-computed values and scikit-learn, and the
cascade oracle on hand-made records."""

import pytest
from sklearn.metrics import roc_auc_score

from analysis.signal import auroc, cascade_oracle, reliability, risk_coverage, stage_signal


def test_auroc_ranks_right_answers_above_wrong_ones():
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [True, False, True]) == 0.5  # one confidence: no ranking
    assert auroc([0.5, 0.7], [True, True]) is None  # no wrong answer to rank against
    confidence = [0.125, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.875, 1.0, 1.0, 0.25, 0.625]
    correct = [False, False, True, False, True, True, False, True, True, True, False, True]
    assert auroc(confidence, correct) == pytest.approx(roc_auc_score(correct, confidence))


def test_calibration_error_and_risk_coverage_by_hand():
    ece, bins = reliability([0.95, 0.95, 0.15, 0.15], [True, False, False, False])
    # bin 0.9-1.0: confidence 0.95, accuracy 0.5; bin 0.1-0.2: 0.15 against 0.0
    assert [(b["low"], b["n"], b["accuracy"]) for b in bins] == [(0.1, 2, 0.0), (0.9, 2, 0.5)]
    assert ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.15)
    assert reliability([1.0], [True])[1][0]["low"] == 0.9  # a confidence of 1 in the last bin
    curve, area = risk_coverage([0.9, 0.6, 0.6, 0.1], [True, False, True, False])
    assert [(p["coverage"], p["risk"]) for p in curve] == [(0.25, 0.0), (0.75, 1 / 3), (1.0, 0.5)]
    assert area == pytest.approx((0 + 2 * (1 / 3) + 0.5) / 4)


def record(index, gold, stages, cost_by_stage):
    """A problem record as the runner writes one: its stages in order, the last resolving."""
    last = stages[-1]
    return {"id": str(index), "index": index, "gold": gold, "answer": last[1],
            "correct": last[1] == gold, "resolved_stage": last[0],
            "cost_usd": sum(cost_by_stage.values()), "cost": {"by_stage_usd": cost_by_stage},
            "stages": [{"stage": name, "answer": answer, "consensus": consensus, "votes": 8,
                        "accepted": i == len(stages) - 1}
                       for i, (name, answer, consensus) in enumerate(stages)]}


def test_the_oracle_escalates_exactly_when_a_stage_is_wrong():
    problems = [
        # s1 wrong, s2 right but unconfident, s3 wrong: the run is wrong, the oracle stops at s2
        record(0, "4", [("s1", "3", 0.25), ("s2", "4", 0.25), ("s3", "5", 1.0)],
               {"s1": 0.0, "s2": 1e-4, "s3": 3e-4}),
        # s1 right and accepted: both right at s1's cost
        record(1, "7", [("s1", "7", 0.875)], {"s1": 0.0}),
        # s1 wrong but accepted: the oracle would escalate into stages never generated
        record(2, "9", [("s1", "8", 1.0)], {"s1": 0.0}),
    ]
    run = {"cell": {"order": ("s1", "s2", "s3"), "task": "gsm8k"}, "problems": problems}
    oracle = cascade_oracle(run)
    assert oracle["accuracy"] == pytest.approx(1 / 3)
    assert oracle["oracle_accuracy"] == pytest.approx(2 / 3)
    assert oracle["oracle_gap"] == pytest.approx(1 / 3)
    assert oracle["cost_usd_per_million"] == pytest.approx(4e-4 * 1e6 / 3)
    assert oracle["oracle_cost_usd_per_million"] == pytest.approx(1e-4 * 1e6 / 3)
    assert oracle["cost_per_correct_usd"] == pytest.approx(4e-4)
    assert oracle["oracle_beyond_generations"] == 1
    s1, s2, s3 = stage_signal(run)
    assert (s1["reached"], s2["reached"], s3["reached"]) == (3, 1, 1)
    assert s1["accuracy"] == pytest.approx(1 / 3)
    assert s1["auroc"] == 0.5  # right at 0.875, wrong at 0.25 and 1.0
    assert s2["auroc"] is None  # one problem: nothing to rank
