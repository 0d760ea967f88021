"""The paper's Tables 3, 5, 8, 9, 11 and 13 rebuilt from runs, the published numbers beside
ours, as Markdown and LaTeX.

Runs map to cells through their config.yaml (see `cope.results.runs.cell_of`): method name,
stage order, votes, tau1/tau2, threshold comparison, pair, seed and task; a run with any
other change to its method (`cope.results.method_defaults.variant_of`) fills no row. A cell with
several seeds uses seed 0 (or the lowest present), except Table 13, which is about seeds.
Our accuracy carries a 95% Wilson interval and the number of problems it rests on; an
unfinished run is marked and counted for what it finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import published
from cope.results.runs import default_settings, pairs_joining, run_summary
from analysis.stats import mean_std, wilson_interval

TASK_NAMES = {"math500": "MATH-500", "gsm8k": "GSM8K", "aime2024": "AIME-2024", "mbpp": "MBPP",
              "humaneval": "HumanEval"}
NOT_RUN = "-"
# the paper's baseline rows -> the cope methods that implement them (conf/method/)
BASELINE_METHODS = {"MoT cascade (vote)": "mot_vote", "MoT cascade (verify)": "mot_verify",
                    "MoT cascade": "mot_vote", "ABC": "abc", "FrugalGPT": "frugalgpt"}


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        spec = "l" + "r" * (len(self.columns) - 1)
        body = [" & ".join(_tex(c) for c in row) + r" \\" for row in self.rows]
        notes = "".join(f"% {note}\n" for note in self.notes)
        return (f"% {self.title}\n{notes}% needs \\usepackage{{booktabs}}\n"
                f"\\begin{{tabular}}{{{spec}}}\n\\toprule\n"
                + " & ".join(_tex(c) for c in self.columns) + " \\\\\n\\midrule\n"
                + "\n".join(body) + "\n\\bottomrule\n\\end{tabular}\n")


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#"), ("±", r"$\pm$"), ("→", r"$\to$")):
        text = text.replace(a, b)
    return text


def _num(value: float | None, digits: int = 1) -> str:
    return NOT_RUN if value is None else f"{value:,.{digits}f}"


# ---------------------------------------------------------------- picking runs for cells

def matching(runs: Sequence[dict], task: str, pair: str, method: str, *, order=None,
             votes: int | None = None, taus: tuple[float, float] | None = None,
             threshold_op: str | None = None, variant: tuple = ()) -> list[dict]:
    """Runs of one cell (any seed). Settings not given are the method's defaults
    (conf/method/); votes and thresholds count only for methods using them. A run whose
    method was otherwise changed (its variant, e.g. plan_max_tokens=128) matches only
    when that variant is asked for."""
    default = default_settings(method)
    want_order = tuple(order or default["order"] or ())
    votes = default["votes"] if votes is None else votes
    taus = default["taus"] if taus is None else tuple(taus)
    threshold_op = threshold_op or default["threshold_op"]
    out = []
    for run in runs:
        c = run["cell"]
        if (c["task"], c["pair"], c["method"]) != (task, pair, method):
            continue
        if want_order and c["order"] != want_order:
            continue
        if c["uses_votes"] and c["votes"] != votes:
            continue
        if c["uses_taus"] and ((c["tau1"], c["tau2"]) != taus or c["threshold_op"] != threshold_op):
            continue
        if tuple(c.get("variant", ())) != tuple(variant):
            continue
        out.append(run)
    return out


def pick(runs: Sequence[dict]) -> dict | None:
    """One run for a cell: the lowest seed; among reruns of it, the one with most problems."""
    if not runs:
        return None
    return min(runs, key=lambda r: (r["cell"]["seed"], -len(r["problems"])))


def ours(run: dict | None) -> dict[str, Any]:
    """Our accuracy (percent, Wilson 95%), cost and n for one cell."""
    if run is None:
        return {"acc": NOT_RUN, "cost": NOT_RUN, "n": NOT_RUN, "summary": None}
    s = run_summary(run)
    low, high = wilson_interval(s["n_correct"], s["n"])
    n = str(s["n"]) if run["finished"] else f"{s['n']} of {s['n_selected']}, unfinished"
    return {"acc": f"{100 * s['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}]",
            "cost": _num(s["cost_usd_per_million"]), "n": n, "summary": s}


def _setting_note(task: str, pair: str, paper: str, wilson: bool = True) -> str:
    return (f"ours: {TASK_NAMES.get(task, task)}, pair {pair}; paper: {paper}. Accuracy in %"
            + (", ours with a 95% Wilson interval" if wilson else "")
            + "; cost in USD per million problems.")


def _paper_pair(pair: str) -> str:
    return pair if pair in published.PAIRS else published.ABLATION_PAIR


# ---------------------------------------------------------------- the tables

def main_results(runs, task: str, pair: str, which: str = "table3") -> Table:
    """Table 3 (MATH-500) or Table 5 (MBPP): baselines and COPE for one pair."""
    data, bench = ((published.TABLE3_MATH500, "MATH-500") if which == "table3"
                   else (published.TABLE5_MBPP, "MBPP"))
    paper_pair = _paper_pair(pair)
    col = published.PAIRS.index(paper_pair)
    rows = []
    for row_name, values in data.items():
        acc, cost = values[col]
        o = ours(pick(matching(runs, task, pair, BASELINE_METHODS.get(row_name, row_name))))
        rows.append([row_name, _num(acc), _num(cost, 0), o["acc"], o["cost"], o["n"]])
    abc = pick(matching(runs, task, pair, "abc"))
    tiers = [abc["cell"]["run_pair"]] if abc else pairs_joining(pair)
    number = which[-1]
    return Table(which, f"Table {number}: main results ({bench} in the paper)",
                 ["method", "paper acc", "paper cost", "ours acc", "ours cost", "ours n"], rows,
                 [_setting_note(task, pair, f"{bench}, {paper_pair}, 500 problems"),
                  "Baselines as cope methods: " + ", ".join(
                      f"{name} = method={m}" for name, m in BASELINE_METHODS.items()
                      if name in data) + "; ABC runs on "
                  + (f"pair={' or '.join(tiers)}" if tiers else "a pair with three roles")
                  + " (a third, tiny model below the same small and large ones)."]
                 + ([f"Filled from task={task} runs (code: accuracy is the share of problems "
                     "whose answer passes the hidden tests; here "
                     + _code_judges(runs, task, pair) + ")."] if which == "table5" else []))


def _code_judges(runs, task: str, pair: str) -> str:
    """Which tests judged the task's runs, from their configs' task.hidden_tests."""
    files = sorted({(run["config"].get("task") or {}).get("hidden_tests") or ""
                    for run in runs if run["cell"]["task"] == task
                    and run["cell"]["pair"] == pair})
    names = [f"the tests in {Path(f).name}" if f else
             "MBPP's given asserts, which the stages also filter by" for f in files]
    return " or ".join(names) or "no runs"


def stages_table(runs, task: str, pair: str) -> Table:
    """Table 8: which stages matter."""
    names = {"large": "large alone", "cope": "S1+S2+S3", "cope_s1s2": "S1+S2",
             "cope_s2s3": "S2+S3", "cope_s1s3": "S1+S3"}
    rows = []
    for method, name in names.items():
        acc, cost = published.TABLE8_STAGES.get(method, (None, None))
        o = ours(pick(matching(runs, task, pair, method)))
        rows.append([name, _num(acc), _num(cost, 0), o["acc"], o["cost"], o["n"]])
    return Table("table8", "Table 8: stages",
                 ["stages", "paper acc", "paper cost", "ours acc", "ours cost", "ours n"], rows,
                 [_setting_note(task, pair, f"MATH-500, {published.ABLATION_PAIR}"),
                  "S1+S3 is not in the paper's table."])


def consensus_accuracy(run: dict) -> tuple[float | None, int]:
    """Accuracy on the problems resolved before the last stage (where consensus was reached)."""
    last = run["cell"]["order"][-1]
    early = [p for p in run["problems"] if p["resolved_stage"] != last]
    return (sum(bool(p["correct"]) for p in early) / len(early) if early else None), len(early)


def votes_table(runs, task: str, pair: str) -> Table:
    """Table 9: the number of samples n."""
    present = {r["cell"]["votes"] for r in runs if r["cell"]["method"] == "cope"
               and (r["cell"]["task"], r["cell"]["pair"]) == (task, pair)}
    rows = []
    for n in sorted(set(published.TABLE9_VOTES) | present):
        acc, cons = published.TABLE9_VOTES.get(n, (None, None))
        run = pick(matching(runs, task, pair, "cope", votes=n))
        o = ours(run)
        ours_cons = NOT_RUN
        if run is not None:
            value, k = consensus_accuracy(run)
            ours_cons = f"{_num(None if value is None else 100 * value)} (of {k})"
        rows.append([f"n={n}", _num(acc), _num(cons), o["acc"], ours_cons, o["cost"], o["n"]])
    return Table("table9", "Table 9: number of samples",
                 ["votes", "paper acc", "paper acc (consensus)", "ours acc",
                  "ours acc (consensus)", "ours cost", "ours n"], rows,
                 [_setting_note(task, pair, f"MATH-500, {published.ABLATION_PAIR}"),
                  "acc (consensus): accuracy on the problems resolved at S1 or S2, i.e. where "
                  "the votes reached the threshold (our reading of the paper's column)."])


def thresholds_table(runs, task: str, pair: str) -> Table:
    """Table 11: tau1 x tau2, problems resolved per stage, accuracy, cost."""
    rows = []
    for taus, (resolved, acc, cost) in published.TABLE11_THRESHOLDS.items():
        run = pick(matching(runs, task, pair, "cope", taus=taus))
        o = ours(run)
        ours_resolved = NOT_RUN
        if run is not None:
            r = o["summary"]["resolved_by_stage"]
            ours_resolved = "/".join(str(r.get(s, 0)) for s in ("s1", "s2", "s3"))
        rows.append([f"{taus[0]:g}/{taus[1]:g}", "/".join(map(str, resolved)), _num(acc),
                     _num(cost, 0), ours_resolved, o["acc"], o["cost"], o["n"]])
    return Table("table11", "Table 11: thresholds",
                 ["tau1/tau2", "paper S1/S2/S3", "paper acc", "paper cost", "ours S1/S2/S3",
                  "ours acc", "ours cost", "ours n"], rows,
                 [_setting_note(task, pair, f"MATH-500, {published.ABLATION_PAIR}, of 500 problems"),
                  "Consensus passes a threshold when it exceeds it (threshold_op=gt)."])


def seeds_table(runs, task: str, pair: str) -> Table:
    """Table 13: mean and sample standard deviation across seeds."""
    rows = []
    for method, ((acc, acc_sd), (cost, cost_sd)) in published.TABLE13_SEEDS.items():
        found = matching(runs, task, pair, method)
        by_seed = {}
        for run in sorted(found, key=lambda r: -len(r["problems"])):
            by_seed.setdefault(run["cell"]["seed"], run)
        summaries = [run_summary(r) for r in by_seed.values()]
        if len(summaries) == 1:
            s = summaries[0]
            ours_acc = f"{100 * s['accuracy']:.1f} (one seed)"
            ours_cost = f"{s['cost_usd_per_million']:,.1f} (one seed)"
            n = f"1 seed ({s['seed']}); n={s['n']}"
        elif summaries:
            m_acc, s_acc = mean_std([100 * s["accuracy"] for s in summaries])
            m_cost, s_cost = mean_std([s["cost_usd_per_million"] for s in summaries])
            ours_acc, ours_cost = f"{m_acc:.1f} ± {s_acc:.2f}", f"{m_cost:,.1f} ± {s_cost:.1f}"
            seeds = ",".join(str(k) for k in sorted(by_seed))
            ns = sorted({s["n"] for s in summaries})
            n = f"{len(summaries)} seeds ({seeds}); n={'/'.join(map(str, ns))}"
        else:
            ours_acc = ours_cost = n = NOT_RUN
        rows.append([method, f"{acc} ± {acc_sd}", f"{cost} ± {cost_sd}", ours_acc, ours_cost, n])
    return Table("table13", "Table 13: seeds (mean ± sample standard deviation)",
                 ["method", "paper acc", "paper cost", "ours acc", "ours cost", "ours seeds"], rows,
                 [_setting_note(task, pair, f"MATH-500, {published.ABLATION_PAIR}, five seeds",
                                wilson=False)])


def all_tables(runs: Sequence[dict], task: str, pair: str) -> list[Table]:
    return [main_results(runs, task, pair, "table3"), main_results(runs, "mbpp", pair, "table5"),
            stages_table(runs, task, pair), votes_table(runs, task, pair),
            thresholds_table(runs, task, pair), seeds_table(runs, task, pair)]
