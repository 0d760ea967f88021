"""Per-stage diagnostics of a cascade run, from what problems.jsonl records per stage: its
majority answer, consensus, acceptance and the per-sample answers.

A stage's answer is judged against the problem's gold answer with the task's equivalence
(math tasks), so the accuracy of every stage a problem reached is known, not only of the
stage that resolved it. Code tasks record each stage's chosen program but no verdict on the
hidden tests, which only the sandbox could give: their per-stage accuracy is not derived.

What the records cannot tell: whether a wrong stage-2 answer was *caused* by the stage-1
plan it was shown (one run has no counterfactual); `carried_plan_effect` estimates that
effect on average by pairing stage 2 of a COPE run with stage 2 of an S2+S3 run, which sees
the same problems without the stage-1 plan. Plan texts live in samples.jsonl; nothing here
judges their quality.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from cope.tasks.math import equivalent

MATH_TASKS = ("gsm8k", "math500", "aime2024")


def stage_correct(stage: dict[str, Any], gold: str | None) -> bool:
    return equivalent(stage.get("answer"), gold)


def _check_task(run: dict[str, Any]) -> None:
    if run["cell"]["task"] not in MATH_TASKS:
        raise ValueError(f"per-stage correctness needs a math task (answers compared with the "
                         f"gold answer); {run['label']} ran {run['cell']['task']}")


def stage_table(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage: problems that reached it, resolved there, accuracy of the resolved answers,
    accuracy of its majority answer over every problem that reached it, mean consensus."""
    _check_task(run)
    out = []
    for name in run["cell"]["order"]:
        reached = [(s, p) for p in run["problems"] for s in p.get("stages", []) if s["stage"] == name]
        resolved = [(s, p) for s, p in reached if p["resolved_stage"] == name]
        right = [stage_correct(s, p["gold"]) for s, p in reached]
        out.append({
            "stage": name,
            "reached": len(reached),
            "resolved": len(resolved),
            "resolved_correct": sum(bool(p["correct"]) for _, p in resolved),
            "resolved_accuracy": (sum(bool(p["correct"]) for _, p in resolved) / len(resolved)
                                  if resolved else None),
            "stage_accuracy": sum(right) / len(right) if right else None,
            "mean_consensus": (sum(s["consensus"] for s, _ in reached) / len(reached)
                               if reached else None),
        })
    return out


def calibration(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage with several votes and per consensus value: how many problems had it and
    how often the stage's majority answer was right. A calibrated consensus would have
    accuracy close to consensus."""
    _check_task(run)
    bins: dict[tuple[str, float], list[bool]] = {}
    for p in run["problems"]:
        for s in p.get("stages", []):
            if s["votes"] > 1:
                bins.setdefault((s["stage"], round(s["consensus"], 6)), []).append(
                    stage_correct(s, p["gold"]))
    return [{"stage": stage, "consensus": c, "n": len(v), "accuracy": sum(v) / len(v)}
            for (stage, c), v in sorted(bins.items())]


def propagation(run: dict[str, Any]) -> dict[str, Any]:
    """What happened to problems passed from one stage to the next: for each consecutive pair
    of stages (a, b), counts over the problems that escalated from a to b of
    - `wrong_then_right`: a's majority wrong, b right (b recovered);
    - `wrong_then_same_wrong`: a's majority wrong and b gave the same wrong answer (the error
      carried: the plan passed on came from an execution with that answer);
    - `wrong_then_other_wrong`: a wrong, b wrong with another answer;
    - `right_then_wrong`: a's (unconfident) majority right, b wrong (led astray);
    - `right_then_right`."""
    _check_task(run)
    order = list(run["cell"]["order"])
    out: dict[str, Any] = {}
    for a, b in zip(order, order[1:]):
        counts: Counter[str] = Counter()
        for p in run["problems"]:
            stages = {s["stage"]: s for s in p.get("stages", [])}
            if a not in stages or b not in stages:
                continue
            sa, sb = stages[a], stages[b]
            ra, rb = stage_correct(sa, p["gold"]), stage_correct(sb, p["gold"])
            if ra:
                counts["right_then_right" if rb else "right_then_wrong"] += 1
            elif rb:
                counts["wrong_then_right"] += 1
            elif sa["answer"] is not None and equivalent(sb["answer"], sa["answer"]):
                counts["wrong_then_same_wrong"] += 1
            else:
                counts["wrong_then_other_wrong"] += 1
        keys = ("wrong_then_right", "wrong_then_same_wrong", "wrong_then_other_wrong",
                "right_then_wrong", "right_then_right")
        out[f"{a}->{b}"] = {"escalated": sum(counts.values()), **{k: counts[k] for k in keys}}
    return out


def carried_plan_effect(cope_run: dict[str, Any], s2s3_run: dict[str, Any]) -> dict[str, Any]:
    """Stage 2 with the stage-1 plan (COPE) against stage 2 without it (S2+S3), on the
    problems COPE escalated from stage 1 and both runs finished. Paired: McNemar's exact
    test on the per-problem correctness of stage 2's majority answer."""
    from analysis.stats import mcnemar_exact

    _check_task(cope_run)
    without = {p["id"]: p for p in s2s3_run["problems"]}
    with_plan, without_plan = [], []
    for p in cope_run["problems"]:
        stages = {s["stage"]: s for s in p.get("stages", [])}
        other = without.get(p["id"])
        if "s2" not in stages or other is None:
            continue
        other_s2 = next(s for s in other["stages"] if s["stage"] == "s2")
        with_plan.append(stage_correct(stages["s2"], p["gold"]))
        without_plan.append(stage_correct(other_s2, other["gold"]))
    n = len(with_plan)
    if n == 0:
        return {"n": 0}
    test = mcnemar_exact(with_plan, without_plan)
    return {"n": n, "s2_accuracy_with_s1_plan": sum(with_plan) / n,
            "s2_accuracy_without_s1_plan": sum(without_plan) / n,
            "only_with_plan_right": test.only_a, "only_without_plan_right": test.only_b,
            "p_value": test.p_value}
