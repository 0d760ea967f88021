"""Loading run directories for analysis."""

from analysis.runs import find_runs, load_run, main, problem_rows, summary_table
from cope.backends.scripted import ScriptedBackend
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
