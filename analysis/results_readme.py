"""The numbers of a results README, written by the report between two markers.

A README beside committed records (experiments/results/<group>/README.md) says how to read
them in its own words; its table of results is generated. `python -m analysis.report
RUNS_DIR --out ...` rewrites what lies between BEGIN and END in RUNS_DIR/README.md, and
nothing else, so the numbers always match the records.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from cope.results.runs import run_summary
from analysis.significance import interval, ratio
from analysis.tables import ours

BEGIN = "<!-- analysis.report: begin (generated from the records; edits here are overwritten) -->"
END = "<!-- analysis.report: end -->"
REFERENCE = "large"


def _versus(row: dict[str, Any] | None) -> tuple[str, str]:
    if row is None or not row["n"]:
        return "-", "-"
    return (f"{interval(row['accuracy_difference'], 100)}, p = {row['p_value']:.2g}",
            ratio(row["cost_ratio"]))


def headline(runs: list[dict[str, Any]], comparisons: list[dict[str, Any]],
             figure: str | None) -> str:
    """One row per run: accuracy with its interval, cost, where it resolved, and the paired
    comparison with large alone on the same problems."""
    against = {(r["task"], r["pair"], r["method"], r["seed"]): r for r in comparisons
               if r["reference"] == REFERENCE}
    lines = [
        "| task | method | problems | accuracy % [95% Wilson] | USD per 1M problems "
        "| resolved by stage | vs large alone: diff (pp) [95% paired bootstrap], McNemar p "
        "| cost vs large alone [95% paired bootstrap] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        s = run_summary(run)
        n = str(s["n"]) if s["finished"] else f"{s['n']} of {s['n_selected']} (unfinished)"
        accuracy = "-" if s["n_correct"] is None or not s["n"] else ours(run)["acc"]
        cost = "-" if math.isnan(s["cost_usd_per_million"]) else f"{s['cost_usd_per_million']:,.1f}"
        stages = ", ".join(f"{k} {v}" for k, v in s["resolved_by_stage"].items())
        diff, ratio = _versus(against.get((s["task"], s["pair"], s["label"], s["seed"])))
        lines.append(f"| {s['task']} | {s['label']} | {n} | {accuracy} | {cost} | {stages} "
                     f"| {diff} | {ratio} |")
    if figure:
        lines += ["", f"![accuracy against cost]({figure})"]
    return "\n".join(lines)


def refresh(readme: Path, block: str) -> bool:
    """Put `block` between the README's markers; False (and nothing written) when it has
    none."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return False
    updated = text[:start + len(BEGIN)] + "\n" + block + "\n" + text[end:]
    if updated != text:
        readme.write_text(updated)
    return True


def figure_link(readme_dir: Path, figure: Path) -> str | None:
    """The figure as the README links it (relative), None when it was not drawn."""
    if not figure.is_file():
        return None
    return Path(os.path.relpath(figure, readme_dir)).as_posix()
