"""The paper's tables rebuilt from run directories: published numbers beside ours."""

import json

import pytest
from omegaconf import OmegaConf

from analysis import published
from cope.results.method_defaults import METHOD_CONF_DIR
from cope.results.runs import cell_label, cell_of, load_runs
from analysis.stats import mean_std, wilson_interval
from analysis.tables import (all_tables, main_results, matching, seeds_table, stages_table,
                             thresholds_table)

from conftest import compose_config

TASK, PAIR = "gsm8k", "qwen-coder-cpu"


@pytest.fixture(scope="module")
def runs(analysis_sweep):
    return load_runs(analysis_sweep)


def metrics(root, cell):
    return json.loads((root / "gsm8k-cpu" / cell / "metrics.json").read_text())


def row(table, first):
    return next(r for r in table.rows if r[0] == first)


def ours_acc(m):
    low, high = wilson_interval(m["n_correct"], m["n_problems"])
    return f"{100 * m['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def test_table3_puts_our_runs_beside_the_published_numbers(runs, analysis_sweep):
    table = main_results(runs, TASK, PAIR, "table3")
    # our pair is not one of the paper's: the paper's column is the ablation pair's
    col = published.PAIRS.index(published.ABLATION_PAIR)
    for method in ("small_single", "small_majority", "large", "cope"):
        m = metrics(analysis_sweep, method)
        acc, cost = published.TABLE3_MATH500[method][col]
        assert row(table, method)[1:3] == [f"{acc:.1f}", "-" if cost is None else f"{cost:,.0f}"]
        assert row(table, method)[3:] == [ours_acc(m), f"{m['cost_usd_per_million']:,.1f}", "30"]
    assert row(table, "ABC")[1:] == ["72.4", "304", "-", "-", "-"]
    md, tex = table.markdown(), table.latex()
    assert "| cope | 74.4 | 212 |" in md and "GSM8K, pair qwen-coder-cpu" in md
    assert tex.count(r"\\") == len(table.rows) + 1 and r"small\_single" in tex
    assert tex.startswith("% Table 3") and r"\begin{tabular}{lrrrrr}" in tex


def test_a_paper_pair_selects_its_column(runs):
    renamed = [{**r, "cell": {**r["cell"], "pair": "qwen1.5b+gpt-4o"}} for r in runs]
    table = main_results(renamed, TASK, "qwen1.5b+gpt-4o", "table3")
    assert row(table, "large")[1:3] == ["75.2", "5,025"]
    assert row(table, "cope")[1:3] == ["75.2", "3,725"]


def baseline_cell(*overrides):
    """The cell a run of a baseline method, as conf/ composes it, belongs to."""
    config = compose_config([f"task={TASK}", f"pair={PAIR}", *overrides])
    return cell_of(OmegaConf.to_container(config, resolve=True))


def test_baseline_rows_are_filled_from_their_cope_methods(runs):
    # give two finished runs the cells of baseline methods at their own defaults (ABC: three
    # unanimous samples per tier, thresholds 1.0 with >=, the three-tier pair; FrugalGPT: one
    # greedy answer, tau1 0.5), which differ from COPE's votes and thresholds
    source = {r["cell"]["method"]: r for r in runs}
    relabelled = [{**source["large"], "cell": baseline_cell("method=frugalgpt")},
                  {**source["cope"], "cell": baseline_cell("method=abc", "pair=tiers-cpu")}]
    assert relabelled[1]["cell"]["votes"] == 3 and relabelled[1]["cell"]["threshold_op"] == "ge"
    table = main_results(relabelled, TASK, PAIR, "table3")
    expected = {"FrugalGPT": source["large"], "ABC": source["cope"]}
    for name, run in expected.items():
        low, high = wilson_interval(sum(bool(p["correct"]) for p in run["problems"]),
                                    len(run["problems"]))
        assert row(table, name)[3].endswith(f"[{100 * low:.1f}, {100 * high:.1f}]")
    assert row(table, "MoT cascade (verify)")[3:] == ["-", "-", "-"]
    assert any("ABC runs on pair=tiers-cpu" in note for note in table.notes)
    assert [cell_label(run["cell"]) for run in relabelled] == ["frugalgpt", "abc"]
    # an override of a baseline's own setting is a cell of its own, not its row
    votes5 = {**source["cope"],
              "cell": baseline_cell("method=abc", "pair=tiers-cpu", "method.votes=5")}
    assert cell_label(votes5["cell"]) == "abc n=5"
    assert row(main_results([votes5], TASK, PAIR, "table3"), "ABC")[3] == "-"


def test_ablation_tables_map_runs_by_config(runs, analysis_sweep):
    t8 = stages_table(runs, TASK, PAIR)
    m = metrics(analysis_sweep, "cope_s1s2")
    assert row(t8, "S1+S2")[1:] == ["71.8", "50", ours_acc(m), f"{m['cost_usd_per_million']:,.1f}", "30"]
    # the killed cell counts what it finished, and says so
    assert row(t8, "S1+S3")[-1] == "12 of 30, unfinished"
    t11 = thresholds_table(runs, TASK, PAIR)
    m = metrics(analysis_sweep, "cope_tau0.5-0.5")
    resolved = "/".join(str(m["resolved_by_stage"][s]) for s in ("s1", "s2", "s3"))
    assert row(t11, "0.5/0.5")[1:5] == ["312/72/116", "70.0", "173", resolved]
    assert row(t11, "0.5/0.75")[4:] == ["-", "-", "-", "-"]  # not run
    m = metrics(analysis_sweep, "cope")
    assert row(t11, "0.75/0.5")[5] == ours_acc(m)


def test_seed_table_averages_the_seeds_of_a_cell(runs, analysis_sweep):
    table = seeds_table(runs, TASK, PAIR)
    seed_dirs = [analysis_sweep / "gsm8k-cpu" / "cope"] + sorted(
        p.parent for p in (analysis_sweep / "multirun").rglob("metrics.json")
        if json.loads(p.read_text())["method"] == "cope")
    accs = [100 * json.loads((d / "metrics.json").read_text())["accuracy"] for d in seed_dirs]
    mean, std = mean_std(accs)
    assert row(table, "cope")[1:4] == ["74.4 ± 0.88", "207 ± 6.0", f"{mean:.1f} ± {std:.2f}"]
    assert row(table, "cope")[5] == "3 seeds (0,1,2); n=30"


def test_table5_names_the_tests_that_judged_the_code_runs(runs):
    def as_mbpp(run, hidden_tests):
        config = {**run["config"], "task": {**run["config"]["task"], "hidden_tests": hidden_tests}}
        return {**run, "config": config, "cell": {**run["cell"], "task": "mbpp"}}

    derived = [as_mbpp(r, "/data/mbpp_derived_tests.jsonl") for r in runs]
    note = main_results(derived, "mbpp", PAIR, "table5").notes[-1]
    assert note.endswith("here the tests in mbpp_derived_tests.jsonl).")
    mixed = derived[:1] + [as_mbpp(r, None) for r in runs[1:]]
    note = main_results(mixed, "mbpp", PAIR, "table5").notes[-1]
    assert ("MBPP's given asserts, which the stages also filter by or the tests in "
            "mbpp_derived_tests.jsonl") in note


def test_every_table_renders(runs):
    tables = all_tables(runs, TASK, PAIR)
    assert [t.name for t in tables] == ["table3", "table5", "table8", "table9", "table11", "table13"]
    t5 = tables[1]
    assert row(t5, "cope")[1:] == ["62.2", "77", "-", "-", "-"]  # no MBPP runs
    t9 = tables[3]
    assert [r[0] for r in t9.rows] == ["n=4", "n=8", "n=32"]
    assert row(t9, "n=32")[1:3] == ["74.4", "85.7"]


@pytest.mark.parametrize("method", sorted(p.stem for p in METHOD_CONF_DIR.glob("*.yaml")))
def test_every_method_composed_without_overrides_is_its_own_default_cell(method):
    pair = "tiers-cpu" if method == "abc" else PAIR
    cell = baseline_cell(f"method={method}", f"pair={pair}")
    assert cell_label(cell) == method
    assert cell["run_pair"] == pair and cell["pair"] == PAIR  # ABC's tiers join the CPU pair
    run = {"cell": cell, "problems": []}
    assert matching([run], TASK, PAIR, method) == [run]


def test_three_tier_runs_are_tested_against_the_two_model_pairs_large_alone(runs):
    from analysis.significance import comparisons

    source = {r["cell"]["method"]: r for r in runs if r["cell"]["seed"] == 0}
    abc = {**source["cope"], "label": "abc",
           "cell": baseline_cell("method=abc", "pair=tiers-cpu")}
    rows = comparisons([source["large"], abc], resamples=200)
    assert [(r["method"], r["pair"], r["reference"]) for r in rows] == [("abc", PAIR, "large")]


@pytest.mark.parametrize("overrides, label", [
    (["method=cope", "method.plan_max_tokens=128"], "cope plan_max_tokens=128"),
    (["method=cope", "method.stages.s1.plan=guideline", "method.stages.s2.plan=none"],
     "cope s1.plan=guideline s2.plan=none"),
    (["method=cope", "method.stages.s3.executor_temperature=0.7", "method.votes=4"],
     "cope n=4 s3.executor_temperature=0.7"),
    (["method=mot_verify", "method.max_tokens=256"], "mot_verify max_tokens=256"),
])
def test_any_other_change_to_a_method_is_a_cell_of_its_own(runs, overrides, label):
    cell = baseline_cell(*overrides)
    assert cell_label(cell) == label
    run = {**next(r for r in runs if r["cell"]["method"] == "cope"), "cell": cell}
    method = cell["method"]
    # it fills no default row, and is found when its variant is asked for
    assert matching([run], TASK, PAIR, method, votes=cell["votes"]) == []
    assert matching([run], TASK, PAIR, method, votes=cell["votes"],
                    variant=cell["variant"]) == [run]
    if method == "cope" and cell["votes"] == 8:
        assert row(main_results([run], TASK, PAIR, "table3"), "cope")[3] == "-"


def test_a_variant_is_read_against_the_runs_own_settings():
    # an interpolated stage default (${method.plan_max_tokens}) follows the run's method, so the
    # change shows once; the scorer's path and fields older records lack are no variant
    cell = baseline_cell("method=frugalgpt", "method.stages.small.scorer=/elsewhere/s.json")
    assert cell["variant"] == () and cell_label(cell) == "frugalgpt"
    config = OmegaConf.to_container(compose_config([f"task={TASK}", f"pair={PAIR}", "method=cope",
                                                    "method.plan_max_tokens=128"]), resolve=True)
    assert cell_of(config)["variant"] == (("plan_max_tokens", 128),)
    for stage in config["method"]["stages"].values():
        del stage["style"], stage["confidence"]
    del config["task"]["confidence"]
    assert cell_of(config)["variant"] == (("plan_max_tokens", 128),)
