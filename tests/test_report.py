"""`python -m analysis.report` end to end on a sweep of real run directories."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar

from analysis.report import main, pareto_section, restrict_to_common
from cope.results.runs import load_runs

ROOT = Path(__file__).resolve().parents[1]


def correct(run_dir):
    rows = [json.loads(line) for line in (run_dir / "problems.jsonl").read_text().splitlines()
            if line.strip()]
    return {row["id"]: row["correct"] for row in rows}


@pytest.fixture(scope="module")
def report(analysis_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    done = subprocess.run([sys.executable, "-m", "analysis.report", str(analysis_sweep), "--out",
                           str(out), "--resamples", "1000"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("13 runs;")
    return out


def test_report_writes_tables_tests_and_figures(report):
    for name in ("table3", "table5", "table8", "table9", "table11", "table13"):
        assert (report / "tables" / f"{name}.md").read_text().startswith("### Table")
        assert r"\begin{tabular}" in (report / "tables" / f"{name}.tex").read_text()
    for stem in ("pareto", "stages-cope_seed_0", "calibration-cope_seed_0",
                 "propagation-cope_seed_0", "stages-cope_tau_0.5_0.5_seed_0", "signal-cope_seed_0",
                 "signal-large_seed_0"):
        for ext in ("png", "pdf"):
            assert (report / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    # figures for one seed per cell; the other seeds appear in the Markdown only
    assert not (report / "figures" / "stages-cope_seed_1.png").exists()
    assert not (report / "figures" / "signal-cope_seed_1.png").exists()
    signal = (report / "signal.md").read_text()
    assert "| cope seed 1 | s1 |" in signal and "oracle gap" in signal
    index = (report / "report.md").read_text()
    assert "| gsm8k | cope_s1s3 | qwen-coder-cpu | 12 of 30 (unfinished) |" in index
    assert "Table 11: thresholds" in index and "Cost of closing the small-to-large gap" in index


def test_significance_matches_statsmodels_on_the_run_records(report, analysis_sweep):
    rows = json.loads((report / "significance.json").read_text())["comparisons"]
    cells = analysis_sweep / "gsm8k-cpu"
    a, b = correct(cells / "cope"), correct(cells / "large")
    ids = sorted(a, key=int)
    x, y = np.array([a[i] for i in ids]), np.array([b[i] for i in ids])
    table = [[np.sum(x & y), np.sum(x & ~y)], [np.sum(~x & y), np.sum(~x & ~y)]]
    row = next(r for r in rows if (r["method"], r["seed"], r["reference"]) == ("cope", 0, "large"))
    assert row["n"] == 30 and not row["partial"]
    assert row["p_value"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)
    assert row["accuracy_a"] == pytest.approx(x.mean()) and row["accuracy_b"] == pytest.approx(y.mean())
    low, high = row["accuracy_difference"]["low"], row["accuracy_difference"]["high"]
    assert low <= x.mean() - y.mean() <= high
    # the killed cell is compared on the problems it finished, and flagged
    partial = next(r for r in rows if (r["method"], r["reference"]) == ("cope_s1s3", "large"))
    assert partial["n"] == 12 and partial["partial"]
    # seeds meet their own seed of the reference
    seeded = next(r for r in rows if (r["method"], r["seed"], r["reference"]) == ("cope", 2, "large"))
    assert seeded["reference_seed"] == 2
    family = [r for r in rows if r["family"] == row["family"]]
    # small_single, small_majority, cope x 3 seeds, s1s2, s2s3, s1s3, n=4, tau=0.5/0.5
    assert len(family) == 10 and all(r["p_holm"] >= r["p_value"] for r in family)
    # each pair of baselines is tested once
    assert not any(r["method"] == "large" for r in rows)


def test_stage_diagnostics_and_gap_costs_in_the_report(report, analysis_sweep):
    stages = json.loads((report / "stages.json").read_text())["gsm8k / qwen-coder-cpu"]
    cope = [json.loads(line) for line in
            (analysis_sweep / "gsm8k-cpu" / "cope" / "problems.jsonl").read_text().splitlines()]
    escalated = sum(p["resolved_stage"] != "s1" for p in cope)
    assert stages["carried_plan_effect"]["n"] == escalated
    assert stages["cope seed 0"]["propagation"]["s1->s2"]["escalated"] == escalated
    resolved = {row["stage"]: row["resolved"] for row in stages["cope seed 0"]["stages"]}
    metrics = json.loads((analysis_sweep / "gsm8k-cpu" / "cope" / "metrics.json").read_text())
    assert resolved == metrics["resolved_by_stage"]
    pareto = json.loads((report / "pareto.json").read_text())["gsm8k / qwen-coder-cpu"]
    assert [g["fraction"] for g in pareto["gap"]["costs"]] == [0.5, 0.8, 1.0]
    assert pareto["gap"]["large"]["label"] == "large"
    costs = [g["cost"] for g in pareto["gap"]["costs"] if g["cost"] is not None]
    assert costs == sorted(costs)


def test_common_problems_cut_every_run_to_the_shared_ones(analysis_sweep):
    runs = restrict_to_common(load_runs(analysis_sweep))
    assert {len(r["problems"]) for r in runs} == {12}


def hand_made_run(label, costs, right):
    return {"label": label, "cell": {"method": label, "seed": 0}, "problems": [
        {"id": str(i), "correct": i < right, "cost_usd": c} for i, c in enumerate(costs)]}


def test_a_run_on_fewer_problems_defines_neither_frontier_nor_gap():
    runs = [hand_made_run("small_single", [0.0] * 10, 4), hand_made_run("large", [1e-4] * 10, 8),
            hand_made_run("cope", [5e-5] * 10, 6),
            hand_made_run("cope_s2s3", [2e-5] * 3, 3)]  # stopped after 3, all right
    section = pareto_section(runs, resamples=200)
    assert [p["n"] for p in section["points"]] == [10, 10, 10, 3]
    assert [f["label"] for f in section["frontier"]] == ["small_single", "cope", "large"]
    # 100% of the gap (to 80%) is reached by large alone, not by the 3-problem run at 100%
    assert section["gap"]["costs"][-1]["cost"] == pytest.approx(100.0)


def test_report_refuses_a_missing_or_empty_directory(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="no run with a finished problem"):
        main([str(tmp_path), "--out", str(tmp_path / "out")])


def test_each_task_and_pair_gets_its_own_tables_and_plot(analysis_sweep, tmp_path):
    import shutil

    import yaml

    from analysis.report import build_report

    for pair in ("qwen-coder-cpu", "qwen1.5b+gpt-4o"):
        for cell in ("large", "small_majority"):
            dst = tmp_path / "runs" / pair / cell
            shutil.copytree(analysis_sweep / "gsm8k-cpu" / cell, dst)
            config = yaml.safe_load((dst / "config.yaml").read_text())
            on_file = yaml.safe_load((ROOT / "conf" / "pair" / f"{pair}.yaml").read_text())
            config["pair"] = {"name": pair, "roles": on_file["roles"]}
            (dst / "config.yaml").write_text(yaml.safe_dump(config))
    written = build_report(tmp_path / "runs", tmp_path / "out", resamples=200)
    for suffix in ("gsm8k-qwen-coder-cpu", "gsm8k-qwen1.5b+gpt-4o"):
        assert (tmp_path / "out" / "tables" / f"table3-{suffix}.tex").exists()
        assert (tmp_path / "out" / "figures" / f"pareto-{suffix}.pdf").exists()
    # the paper's own pair is set beside its own column
    assert "| large | 75.2 | 5,025 |" in (tmp_path / "out" / "tables" /
                                          "table3-gsm8k-qwen1.5b+gpt-4o.md").read_text()
    assert {r["family"] for r in written["significance"]} == {
        "gsm8k/qwen-coder-cpu vs large", "gsm8k/qwen1.5b+gpt-4o vs large"}


def test_cells_that_ran_programs_under_different_isolation_are_flagged(analysis_sweep, tmp_path):
    import shutil

    from analysis.report import build_report

    layers = {"large": "bwrap+pidns+netns+rofs+uid+rlimits",
              "small_majority": "process+uid+rlimits+unprotected"}
    for cell, isolation in layers.items():
        dst = tmp_path / "runs" / cell
        shutil.copytree(analysis_sweep / "gsm8k-cpu" / cell, dst)
        metrics = json.loads((dst / "metrics.json").read_text())
        (dst / "metrics.json").write_text(json.dumps({**metrics,
                                                      "sandbox_isolation": {isolation: 3}}))
    written = build_report(tmp_path / "runs", tmp_path / "out", resamples=200)
    assert len(written["warnings"]) == 1
    warning = written["warnings"][0]
    assert "different sandbox isolation" in warning and layers["small_majority"] in warning
    assert warning in (tmp_path / "out" / "report.md").read_text()
    # the same isolation everywhere: no warning
    for cell in layers:
        path = tmp_path / "runs" / cell / "metrics.json"
        metrics = json.loads(path.read_text())
        path.write_text(json.dumps({**metrics, "sandbox_isolation": {layers["large"]: 3}}))
    assert build_report(tmp_path / "runs", tmp_path / "out2", resamples=200)["warnings"] == []
    # a record written before the layers were spelled out names the same isolation
    path = tmp_path / "runs" / "large" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["sandbox_isolation"]
    path.write_text(json.dumps({**metrics, "task_details": {"sandbox": "bwrap+uid+rlimits"}}))
    assert build_report(tmp_path / "runs", tmp_path / "out3", resamples=200)["warnings"] == []


def test_a_results_readme_gets_its_table_from_the_records(analysis_sweep, tmp_path):
    from analysis.results_readme import BEGIN, END

    cells = analysis_sweep / "gsm8k-cpu"
    readme = cells / "README.md"
    reading = "How to read it: written by hand, kept as it is."
    readme.write_text(f"# Results\n\n{BEGIN}\nstale numbers\n{END}\n\n{reading}\n")
    try:
        main([str(cells), "--out", str(tmp_path / "report"), "--resamples", "200"])
        text = readme.read_text()
    finally:
        readme.unlink()
    assert "stale numbers" not in text and text.endswith(f"{END}\n\n{reading}\n")
    block = text[text.index(BEGIN):text.index(END)]
    rows = {line.split(" | ")[1]: line for line in block.splitlines() if line.startswith("| gsm8k")}
    large = load_runs(cells / "large")[0]
    n_right = sum(bool(p["correct"]) for p in large["problems"])
    assert f"| {100 * n_right / 30:.1f} [" in rows["large"]
    assert "12 of 30 (unfinished)" in rows["cope_s1s3"]
    assert ", p = " in rows["cope"] and rows["large"].endswith("| - | - |")
    assert "![accuracy against cost](../" in block  # the figure, relative to the README


def test_a_readme_without_the_markers_is_left_alone(analysis_sweep, tmp_path):
    cells = analysis_sweep / "gsm8k-cpu"
    readme = cells / "README.md"
    readme.write_text("# Notes\n")
    try:
        main([str(cells), "--out", str(tmp_path / "report"), "--resamples", "200"])
        assert readme.read_text() == "# Notes\n"
    finally:
        readme.unlink()
