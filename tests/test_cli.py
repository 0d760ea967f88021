"""The `cope` command: Hydra's usual flags and a multirun, on the scripted backend."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SCRIPTED = ["backend.name=scripted", "pair=tiny-cpu", "task.limit=2", "progress=false"]


def cope(*args, tmp_path):
    env = dict(os.environ, COPE_RUNS_DIR=str(tmp_path / "runs"), COPE_HOME=str(tmp_path / "home"))
    return subprocess.run([sys.executable, "-m", "cope.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_help_lists_the_groups(tmp_path):
    out = cope("--help", tmp_path=tmp_path)
    assert out.returncode == 0
    for group in ("task:", "method:", "model:", "pair:", "backend:", "tracker:", "experiment:"):
        assert group in out.stdout
    assert "small_majority" in out.stdout and "quickstart" in out.stdout


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = cope("--cfg", "job", "method.votes=4", tmp_path=tmp_path)
    assert out.returncode == 0
    assert "votes: 4" in out.stdout and "qwen-coder-1_5b" in out.stdout


def test_multirun_runs_every_cell(tmp_path):
    out = cope("-m", *SCRIPTED, "method.votes=2,4", "method.tau1=0.5,0.75", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = sorted((tmp_path / "runs" / "multirun").rglob("metrics.json"))
    assert len(metrics) == 4
    cells = {(json.loads(p.read_text())["n_problems"]) for p in metrics}
    assert cells == {2}
    configs = [(p.parent / "config.yaml").read_text() for p in metrics]
    assert sum("tau1: 0.5\n" in c for c in configs) == 2


def test_a_config_error_exits_with_a_message_and_no_traceback(tmp_path):
    out = cope(*SCRIPTED, "task.limit=0", tmp_path=tmp_path)
    assert out.returncode == 2
    assert "task.limit=0" in out.stderr and "Traceback" not in out.stderr
    assert not list(Path(tmp_path / "home").rglob("*.sqlite"))  # nothing generated


def test_a_stopped_run_keeps_its_records_and_writes_metrics(tmp_path):
    """SIGTERM mid-run: finished problems stay recorded and metrics.json says it stopped."""
    import signal
    import time

    env = dict(os.environ, COPE_RUNS_DIR=str(tmp_path / "runs"), COPE_HOME=str(tmp_path / "home"),
               COPE_SCRIPTED_DELAY="0.05")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cope.cli", "backend.name=scripted", "pair=tiny-cpu",
         "task.limit=200", "concurrency=1", "progress=false", f"run_dir={tmp_path / 'run'}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    problems = tmp_path / "run" / "problems.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not problems.exists() or len(problems.read_text().splitlines()) < 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "resume=true" in err and "Traceback" not in err  # a one-line notice, not a crash
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["finished"] is False
    rows = [json.loads(line) for line in problems.read_text().splitlines()]
    assert 2 <= metrics["n_problems"] == len(rows) < 200
    assert [r["index"] for r in rows] == list(range(len(rows)))


def test_table_experiments_are_multiruns(tmp_path):
    out = cope("experiment=cpu_table8", "backend.name=scripted", "task.limit=3", "progress=false",
               tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "multirun").rglob("metrics.json")]
    assert sorted(m["method"] for m in metrics) == ["cope", "cope_s1s2", "cope_s2s3", "large"]
    by_method = {m["method"]: m for m in metrics}
    assert list(by_method["cope_s1s2"]["resolved_by_stage"]) == ["s1", "s2"]
    assert list(by_method["cope_s2s3"]["resolved_by_stage"]) == ["s2", "s3"]


def test_joblib_workers_share_one_cache(tmp_path):
    """A threshold grid in parallel processes: the cells share every generation they can."""
    cache = tmp_path / "shared.sqlite"
    out = cope("experiment=cpu_table11", "backend.name=scripted", "task.limit=4", "progress=false",
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"cache.path={cache}",
               tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "multirun").rglob("metrics.json")]
    assert len(metrics) == 4
    from cope.cache import GenerationCache

    stored = GenerationCache(cache).count()
    calls = sum(m["backend_calls"] for m in metrics)
    assert stored <= calls  # a generation is stored once, however many cells asked for it
    assert stored < sum(m["backend_calls"] + m["cache_hits"] for m in metrics)


def test_wandb_offline_multirun_logs_one_run_per_job(tmp_path):
    """tracker=wandb without an account: offline runs, one per job, grouped by sweep."""
    import os as _os

    env_key = "WANDB_MODE"
    saved = _os.environ.pop(env_key, None)
    try:
        out = cope("-m", *SCRIPTED, "tracker=wandb", "method.votes=2,4", tmp_path=tmp_path)
    finally:
        if saved is not None:
            _os.environ[env_key] = saved
    assert out.returncode == 0, out.stderr[-3000:]
    offline = sorted((tmp_path / "runs").rglob("offline-run-*"))
    assert len(offline) == 2
    from analysis.wandb_offline import read_offline_run

    runs = [read_offline_run(path) for path in offline]
    assert len({r["group"] for r in runs}) == 1
    assert runs[0]["group"].startswith(str(tmp_path / "runs" / "multirun"))
    assert {r["config"]["method"]["votes"] for r in runs} == {2, 4}
    for r in runs:
        assert r["summary"]["n_problems"] == 2 and "cost_usd_per_million" in r["summary"]
        # the problem table (W&B stores tables as artifacts) and the run directory
        assert r["artifacts"] == 2 and r["history"] >= 1
        assert r["config"]["tracker"]["name"] == "wandb"
