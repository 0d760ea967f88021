"""How good is each stage's escalation signal? A cascade is only as good as its confidence:
a stage should answer when its answer is right and pass the problem on when it is wrong.

For every stage of a run (math tasks, whose stage answers can be judged against the gold
answer: `analysis.stages.stage_correct`), over the problems that reached it:
- AUROC of its confidence (consensus, or the stage's rule) for the correctness of its answer:
  the chance that a right answer has higher confidence than a wrong one (ties count half);
  None when every answer is right or every one wrong;
- expected calibration error over equal-width confidence bins, with the bins (a reliability
  diagram);
- the risk-coverage curve (answer the most confident share c of problems: the error rate
  among them) and its area (AURC; lower is better);
and for the run, the cascade oracle on the same generations: each problem escalates exactly
when a stage's answer is wrong, so it is right if any stage it reached was right, and pays for
the stages up to that one. A problem that a stage accepted wrongly never reached the later
stages: the oracle would have escalated it into generations the run does not have, so it
counts as wrong there (the oracle is then a lower bound on the true oracle) and the count is
reported. Cost per correct answer sits beside both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis.stages import MATH_TASKS, stage_correct

BINS = 10


def auroc(confidence: Sequence[float], correct: Sequence[bool]) -> float | None:
    """The Mann-Whitney estimate of P(conf(right) > conf(wrong)), ties counting half."""
    right = [c for c, ok in zip(confidence, correct) if ok]
    wrong = [c for c, ok in zip(confidence, correct) if not ok]
    if not right or not wrong:
        return None
    # rank-based: average ranks over ties, O(n log n)
    order = sorted(range(len(confidence)), key=lambda i: confidence[i])
    ranks = [0.0] * len(confidence)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and confidence[order[j + 1]] == confidence[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, ok in zip(ranks, correct) if ok)
    n_right, n_wrong = len(right), len(wrong)
    return (rank_sum - n_right * (n_right + 1) / 2) / (n_right * n_wrong)


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = BINS
                ) -> tuple[float | None, list[dict[str, Any]]]:
    """(expected calibration error, the non-empty bins with their mean confidence and
    accuracy); a confidence of 1 falls in the last bin."""
    if not confidence:
        return None, []
    groups: dict[int, list[tuple[float, bool]]] = {}
    for c, ok in zip(confidence, correct):
        groups.setdefault(min(int(c * bins), bins - 1), []).append((c, ok))
    out, ece = [], 0.0
    for b in sorted(groups):
        members = groups[b]
        mean_c = sum(c for c, _ in members) / len(members)
        acc = sum(ok for _, ok in members) / len(members)
        ece += len(members) / len(confidence) * abs(acc - mean_c)
        out.append({"low": b / bins, "high": (b + 1) / bins, "n": len(members),
                    "confidence": mean_c, "accuracy": acc})
    return ece, out


def risk_coverage(confidence: Sequence[float], correct: Sequence[bool]
                  ) -> tuple[list[dict[str, float]], float | None]:
    """The curve, one point per distinct confidence (problems of equal confidence are
    answered together), from the most confident down; and its area, averaged over problems."""
    if not confidence:
        return [], None
    pairs = sorted(zip(confidence, correct), key=lambda p: -p[0])
    points, errors, answered, area = [], 0, 0, 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        tied_errors = sum(not ok for _, ok in pairs[i:j])
        # within a tie the risk is the same for every answered problem of it
        errors += tied_errors
        answered = j
        area += (j - i) * errors / answered
        points.append({"confidence": pairs[i][0], "coverage": answered / len(pairs),
                       "risk": errors / answered})
        i = j
    return points, area / len(pairs)


def stage_signal(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage of the run's order: the problems that reached it, its accuracy there, AUROC,
    ECE with its bins, and the risk-coverage curve with its area."""
    out = []
    for name in run["cell"]["order"]:
        reached = [(s, p) for p in run["problems"] for s in p.get("stages", []) if s["stage"] == name]
        confidence = [float(s["consensus"]) for s, _ in reached]
        correct = [stage_correct(s, p["gold"]) for s, p in reached]
        ece, bins = reliability(confidence, correct)
        curve, aurc = risk_coverage(confidence, correct)
        out.append({"stage": name, "reached": len(reached),
                    "accuracy": sum(correct) / len(correct) if correct else None,
                    "distinct_confidences": len(set(confidence)),
                    "auroc": auroc(confidence, correct), "ece": ece, "bins": bins,
                    "aurc": aurc, "risk_coverage": curve})
    return out


def cascade_oracle(run: dict[str, Any]) -> dict[str, Any]:
    """The run's accuracy and cost per correct answer against the cascade oracle's on the
    same generations (see the module's docstring)."""
    order = list(run["cell"]["order"])
    n = len(run["problems"])
    right = oracle_right = beyond = 0
    cost = oracle_cost = 0.0
    for p in run["problems"]:
        right += bool(p["correct"])
        cost += p["cost_usd"]
        by_stage = (p.get("cost") or {}).get("by_stage_usd") or {}
        stages = {s["stage"]: s for s in p.get("stages", [])}
        spent, solved = 0.0, False
        for name in order:
            if name not in stages:
                break
            spent += by_stage.get(name, 0.0)
            if stage_correct(stages[name], p["gold"]):
                solved = True
                break
        oracle_right += solved
        oracle_cost += spent
        last_reached = max((order.index(s) for s in stages if s in order), default=-1)
        if not solved and last_reached < len(order) - 1:
            beyond += 1  # accepted wrongly: the oracle would go on into ungenerated stages
    per_million = 1e6 / n if n else float("nan")
    return {
        "n": n, "accuracy": right / n if n else None,
        "oracle_accuracy": oracle_right / n if n else None,
        "oracle_gap": (oracle_right - right) / n if n else None,
        "cost_usd_per_million": cost * per_million,
        "oracle_cost_usd_per_million": oracle_cost * per_million,
        "cost_per_correct_usd": cost / right if right else None,
        "oracle_cost_per_correct_usd": oracle_cost / oracle_right if oracle_right else None,
        "oracle_beyond_generations": beyond,
    }


def signal_section(group: list[dict[str, Any]]) -> dict[str, Any]:
    """Every math-task run of a group: its stages' signal and its cascade oracle."""
    out = {}
    for run in group:
        if run["cell"]["task"] not in MATH_TASKS or not all("stages" in p for p in run["problems"]):
            continue
        key = f"{run['label']} seed {run['cell']['seed']}"
        out[key] = {"run_dir": run["run_dir"], "n": len(run["problems"]),
                    "stages": stage_signal(run), "oracle": cascade_oracle(run), "_run": run}
    return out


def signal_markdown(name: str, section: dict[str, Any]) -> str:
    fmt = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"## {name}", "", "| run | n | accuracy % | oracle accuracy % | oracle gap (pp) | "
             "USD / 1M | oracle USD / 1M | USD per 1M correct answers | oracle's | "
             "wrongly accepted (oracle lacks later stages) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, d in section.items():
        o = d["oracle"]
        per_correct = lambda v: "-" if v is None else f"{1e6 * v:,.1f}"  # noqa: E731
        lines.append(f"| {key} | {o['n']} | {pct(o['accuracy'])} | {pct(o['oracle_accuracy'])} | "
                     f"{fmt(None if o['oracle_gap'] is None else 100 * o['oracle_gap'], 1)} | "
                     f"{o['cost_usd_per_million']:,.1f} | {o['oracle_cost_usd_per_million']:,.1f} | "
                     f"{per_correct(o['cost_per_correct_usd'])} | "
                     f"{per_correct(o['oracle_cost_per_correct_usd'])} | {o['oracle_beyond_generations']} |")
    lines += ["", "| run | stage | reached | accuracy % | distinct confidences | AUROC | ECE | AURC |",
              "|---|---|---|---|---|---|---|---|"]
    for key, d in section.items():
        for s in d["stages"]:
            lines.append(f"| {key} | {s['stage']} | {s['reached']} | {pct(s['accuracy'])} | "
                         f"{s['distinct_confidences']} | {fmt(s['auroc'])} | {fmt(s['ece'])} | "
                         f"{fmt(s['aurc'])} |")
    return "\n".join(lines) + "\n"


LIMITS = """AUROC is undefined (-) where every answer of a stage was right or every one wrong; a
stage with one distinct confidence (one vote) cannot rank its answers (AUROC 0.5). ECE uses
10 equal-width bins. The oracle escalates exactly when a stage's answer is wrong, on the
generations the run made: where a stage accepted a wrong answer, the later stages were never
generated, so the oracle counts that problem wrong (a lower bound); pools that run every
stage on every problem remove that limit.
"""
