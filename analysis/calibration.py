"""Calibrated configurations tested once: the dev estimate, the guarantee and the test
result side by side, with the paired test against large alone on the test problems.

    python -m analysis.calibration CALIBRATION_DIR --runs TEST_RUNS_DIR --large LARGE_TEST_RUN

CALIBRATION_DIR is `cope calibrate --out`; TEST_RUNS_DIR holds one run per method, named
after it (the calibrated experiment run on the test problems). Writes calibration.md,
test.json and the figure calibration-test.png/pdf into CALIBRATION_DIR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from analysis.plots import COLUMN_WIDTH_IN, paper_text, save, subplots
from analysis.stats import mcnemar_exact, wilson_interval
from cope.records import read_complete_lines
from cope.results.styles import method_style


def _run(run_dir: Path) -> dict[str, dict]:
    return {row["id"]: row for row in read_complete_lines(run_dir / "problems.jsonl")}


def compare(calibration: dict[str, Any], runs: Path, large: Path) -> list[dict[str, Any]]:
    """One row per calibrated method: dev estimate, statement, test result, against large."""
    reference = _run(large)
    rows = []
    for method in calibration["methods"]:
        chosen = method["chosen"]
        row: dict[str, Any] = {"method": method["method"], "statement": method["statement"],
                               "chosen": chosen and chosen["configuration"]}
        test_dir = runs / method["method"]
        if chosen is None or not (test_dir / "problems.jsonl").exists():
            rows.append({**row, "test": None})
            continue
        mine = _run(test_dir)
        missing = sorted(set(mine) ^ set(reference))
        if missing:
            raise SystemExit(f"{test_dir} and {large} hold different problems "
                             f"(e.g. {missing[:3]}): compare on one test split.")
        ids = sorted(mine, key=lambda i: mine[i]["index"])
        correct = np.array([bool(mine[i]["correct"]) for i in ids])
        large_correct = np.array([bool(reference[i]["correct"]) for i in ids])
        cost = np.mean([mine[i]["cost_usd"] for i in ids]) * 1e6
        large_cost = np.mean([reference[i]["cost_usd"] for i in ids]) * 1e6
        mcnemar = mcnemar_exact(correct, large_correct)
        row.update({
            "dev": chosen["dev"], "p_value": chosen["p_value"],
            "test": {"problems": len(ids), "accuracy": float(correct.mean()),
                     "accuracy_interval": list(wilson_interval(int(correct.sum()), len(ids))),
                     "usd_per_1m": float(cost)},
            "large": {"accuracy": float(large_correct.mean()), "usd_per_1m": float(large_cost)},
            "accuracy_minus_large": float(correct.mean() - large_correct.mean()),
            "cost_over_large": float(cost / large_cost) if large_cost else None,
            "mcnemar": {"only_calibrated": mcnemar.only_a, "only_large": mcnemar.only_b,
                        "p_value": mcnemar.p_value},
        })
        rows.append(row)
    return rows


def markdown(calibration: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = ["# Calibrated on dev, tested once\n",
             f"Target `{calibration['target']}`, delta {calibration['delta']:g} (the statement "
             f"holds with probability >= {1 - calibration['delta']:g} over the dev draw, for "
             "test problems exchangeable with the dev ones).\n",
             "| method | chosen | dev accuracy | dev $/1M | certified (p) | test accuracy "
             "[95% CI] | test $/1M | vs large: accuracy | cost | McNemar p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["test"] is None:
            lines.append(f"| {r['method']} | {r['chosen'] or 'none certified'} | | | | "
                         "not run | | | | |")
            continue
        dev, test = r["dev"], r["test"]
        low, high = test["accuracy_interval"]
        ratio = "" if r["cost_over_large"] is None else f"{r['cost_over_large']:.2f}x"
        lines.append(
            f"| {r['method']} | `{r['chosen']}` | {dev['accuracy']:.1%} | "
            f"{dev['usd_per_1m']:,.2f} | {r['statement']} ({r['p_value']:.3g}) | "
            f"{test['accuracy']:.1%} [{low:.1%}, {high:.1%}] | {test['usd_per_1m']:,.2f} | "
            f"{r['accuracy_minus_large']:+.1%} | {ratio} | {r['mcnemar']['p_value']:.3g} |")
    return "\n".join(lines) + "\n"


@paper_text
def figure(rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """Dev estimate (hollow) to test result (filled) per method, and large alone on test."""
    fig, ax = subplots(figsize=(COLUMN_WIDTH_IN, 2.4))
    tested = [r for r in rows if r["test"] is not None]
    for r in tested:
        style = method_style(r["method"])
        dev, test = r["dev"], r["test"]
        ax.annotate("", xy=(test["usd_per_1m"], test["accuracy"]),
                    xytext=(dev["usd_per_1m"], dev["accuracy"]),
                    arrowprops={"arrowstyle": "->", "color": style["colour"], "lw": 0.8})
        ax.plot(dev["usd_per_1m"], dev["accuracy"], style["marker"], mfc="none",
                color=style["colour"], ms=5)
        ax.plot(test["usd_per_1m"], test["accuracy"], style["marker"], color=style["colour"],
                ms=5, label=f"{r['method']} (calibrated)")
    if tested:
        large = tested[0]["large"]
        style = method_style("large")
        ax.plot(large["usd_per_1m"], large["accuracy"], style["marker"], color=style["colour"],
                ms=5, label="large alone")
    ax.set_xlabel("USD per 1M problems (test)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    ax.set_title("hollow: dev estimate; filled: test")
    return save(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibration", type=Path, help="cope calibrate's --out directory")
    parser.add_argument("--runs", type=Path, required=True,
                        help="the test runs, one directory per method")
    parser.add_argument("--large", type=Path, required=True, help="large alone on test")
    args = parser.parse_args(argv)
    calibration = json.loads((args.calibration / "calibration.json").read_text())
    rows = compare(calibration, args.runs, args.large)
    (args.calibration / "calibration.md").write_text(markdown(calibration, rows))
    (args.calibration / "test.json").write_text(json.dumps(rows, indent=1) + "\n")
    figure(rows, args.calibration / "calibration-test")
    print(markdown(calibration, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
