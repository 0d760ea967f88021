"""Loading run directories (finished, unfinished, W&B offline) for analysis."""

import json

import pytest

from cope.results.runs import comparison_pair, find_runs, load_run, main, problem_rows, summary_table
from cope.backends.scripted import ScriptedBackend
from cope.config import pair_label
from cope.runner import run


def test_runs_load_into_tidy_rows(make_config, tmp_path, capsys):
    backend = ScriptedBackend()
    for seed in (0, 1):
        cfg = make_config("pair=tiny-cpu", "backend.name=scripted", "task.limit=3", f"seed={seed}",
                          f"run_dir={tmp_path / 'runs' / str(seed)}")
        run(cfg, backends={"scripted": backend})
    found = find_runs(tmp_path / "runs")
    assert [p.name for p in found] == ["0", "1"]
    runs = [load_run(p) for p in found]
    rows = [row for r in runs for row in problem_rows(r)]
    assert len(rows) == 6 and {row["seed"] for row in rows} == {0, 1}
    assert all(row["method"] == "cope" and row["resolved_stage"] in {"s1", "s2", "s3"} for row in rows)
    table = summary_table(runs)
    assert table.count("| gsm8k | cope | tiny-cpu | 3 |") == 2
    main([str(tmp_path / "runs")])
    assert "| gsm8k | cope |" in capsys.readouterr().out


def test_unfinished_runs_load_with_what_they_finished(analysis_sweep, tmp_path):
    from sweep import copy_run, cut_short

    from cope.results.runs import load_runs

    runs = {(r["label"], r["cell"]["seed"]): r for r in load_runs(analysis_sweep)}
    killed = runs[("cope_s1s3", 0)]
    assert len(killed["problems"]) == 12 and not killed["finished"]  # the torn 13th line dropped
    assert killed["metrics"] is None and killed["n_selected"] == 30
    assert "12 of 30 (unfinished)" in summary_table([killed])
    # a run killed before its first problem has nothing to compare and is left out
    empty = copy_run(analysis_sweep / "gsm8k-cpu" / "large", tmp_path / "runs" / "empty")
    cut_short(empty, keep=0, torn=False)
    assert load_run(empty)["problems"] == [] and load_runs(tmp_path / "runs") == []


def test_cells_and_labels_come_from_config(analysis_sweep):
    from cope.results.runs import load_runs, tidy

    runs = load_runs(analysis_sweep)
    labels = {r["label"] for r in runs}
    assert labels == {"large", "small_single", "small_majority", "cope", "cope_s1s2", "cope_s2s3",
                      "cope_s1s3", "cope n=4", "cope tau=0.5/0.5"}
    seeds = sorted(r["cell"]["seed"] for r in runs if r["label"] == "cope")
    assert seeds == [0, 1, 2]  # two of them from the multirun layout
    votes4 = next(r for r in runs if r["label"] == "cope n=4")
    assert (votes4["cell"]["votes"], votes4["cell"]["order"]) == (4, ("s1", "s2", "s3"))
    frame = tidy(runs)
    assert len(frame) == sum(len(r["problems"]) for r in runs) == 12 * 30 + 12
    cope = frame[(frame.label == "cope") & (frame.seed == 0)]
    assert set(cope.columns) >= {"s1_answer", "s1_consensus", "s2_accepted", "s3_answer"}
    assert cope.correct.mean() == pytest.approx(
        json.loads((analysis_sweep / "gsm8k-cpu" / "cope" / "metrics.json").read_text())["accuracy"])


def test_wandb_offline_runs_load_as_runs(make_config, tmp_path, monkeypatch):
    """tracker=wandb offline: the W&B files alone give the same per-problem results."""
    from analysis.report import build_report
    from analysis.wandb_offline import find_offline_runs, load_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    backend = ScriptedBackend()
    for method in ("large", "cope"):
        cfg = make_config("pair=qwen-coder-cpu", "backend.name=scripted", "task.limit=6",
                          f"method={method}", "tracker=wandb", f"run_dir={tmp_path / 'runs' / method}")
        run(cfg, backends={"scripted": backend})
    # the W&B service writes the offline files on its own time: on a busy machine they may be
    # incomplete when run.finish() returns; teardown waits for the service to finish
    import wandb

    wandb.teardown()
    found = find_offline_runs(tmp_path / "runs")
    assert len(found) == 2
    for path in found:
        from_wandb = load_offline_run(path)
        from_dir = load_run(path.parents[1])
        assert from_wandb["label"] == from_dir["label"] and from_wandb["finished"]
        keys = ("id", "correct", "resolved_stage", "cost_usd")
        assert [[p[k] for k in keys] for p in from_wandb["problems"]] == \
            [[p[k] for k in keys] for p in from_dir["problems"]]
    written = build_report(tmp_path / "runs", tmp_path / "out", resamples=200, wandb=True)
    (row,) = [r for r in written["significance"] if r["method"] == "cope"]
    assert row["n"] == 6 and row["reference"] == "large"
    assert written["stages"] == {"gsm8k / qwen-coder-cpu": {}}  # no per-stage records in W&B


def test_failed_samples_and_repeated_records_are_reported(analysis_sweep, tmp_path):
    from sweep import copy_run

    from cope.results.runs import run_summary

    run_dir = copy_run(analysis_sweep / "gsm8k-cpu" / "large", tmp_path / "large")
    rows = [json.loads(line) for line in (run_dir / "problems.jsonl").read_text().splitlines()]
    rows[3]["failed_samples"] = 1  # what the runner records when a request failed for good
    redone = {**rows[5], "correct": not rows[5]["correct"]}  # a later record of problem 5
    lines = [json.dumps(r) for r in rows + [redone]]
    (run_dir / "problems.jsonl").write_text("\n".join(lines) + "\n")
    loaded = load_run(run_dir)
    assert len(loaded["problems"]) == 30
    assert loaded["problems"][5]["correct"] == redone["correct"]
    assert run_summary(loaded)["failed_samples"] == 1
    assert summary_table([loaded]).rstrip().endswith("| 1 / 0 |")


def test_pairwise_judged_runs_are_left_out_with_a_warning(make_config, tmp_path):
    import shutil
    from pathlib import Path

    from cope.results.runs import load_runs

    cfg = make_config("pair=tiny-cpu", "backend.name=scripted", "task.limit=2",
                      f"run_dir={tmp_path / 'runs' / 'gsm8k'}")
    run(cfg, backends={"scripted": ScriptedBackend()})
    committed = Path(__file__).parents[1] / "experiments" / "results" / "mt_bench-cpu" / "large"
    shutil.copytree(committed, tmp_path / "runs" / "mt_bench")
    with pytest.warns(UserWarning, match="task mt_bench has no per-problem verdict"):
        runs = load_runs(tmp_path / "runs")
    assert [r["cell"]["task"] for r in runs] == ["gsm8k"]


def test_runs_made_before_the_aliases_were_renamed_keep_their_pair():
    """Committed runs name the CPU models qwen-coder-0.5b and qwen-coder-1.5b, as conf/ did
    when they ran: the same pair, and ABC's three tiers still join it."""
    old = {"small": "qwen-coder-0.5b", "large": "qwen-coder-1.5b"}
    assert pair_label({"name": "qwen-coder-cpu", "roles": old}) == "qwen-coder-cpu"
    tiers = {"name": "tiers-cpu", "roles": {"tiny": "smollm2-135m", **old}}
    assert comparison_pair(tiers) == "qwen-coder-cpu"
    changed = {"name": "qwen-coder-cpu", "roles": {**old, "large": "gpt-4o-mini"}}
    assert pair_label(changed) == "qwen-coder-cpu[large=gpt-4o-mini]"
