"""Stopping and continuing runs: SIGKILL at any point, torn lines, and budgets."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cope.cache import GenerationCache
from cope.records import RunDirError
from cope.runner import run

from conftest import ROOT

ARGS = ["backend.name=scripted", "pair=qwen-coder-cpu", "task.limit=12", "concurrency=1",
        "progress=false"]
VOLATILE = ("cache_hit", "latency_s")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def stable_samples(path):
    return [{k: v for k, v in s.items() if k not in VOLATILE} for s in read_jsonl(path)]


@pytest.fixture
def reference(make_config, tmp_path):
    """The same run, uninterrupted, on a cache of its own."""
    return run(make_config(*ARGS, f"run_dir={tmp_path / 'reference'}",
                           f"cache.path={tmp_path / 'reference.sqlite'}"))


def launch(tmp_path, run_dir, cache, *extra):
    env = dict(os.environ, COPE_HOME=str(tmp_path / "home"), COPE_SCRIPTED_DELAY="0.01")
    return subprocess.Popen(
        [sys.executable, "-m", "cope.cli", *ARGS, f"run_dir={run_dir}", f"cache.path={cache}", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kill_after_samples", [3, 40, 97])
def test_sigkill_then_resume_gives_the_uninterrupted_records(make_config, tmp_path, reference,
                                                             kill_after_samples):
    run_dir, cache_path = tmp_path / "run", tmp_path / "cache.sqlite"
    proc = launch(tmp_path, run_dir, cache_path)
    samples = run_dir / "samples.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if samples.exists() and samples.read_bytes().count(b"\n") >= kill_after_samples:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run_dir / "metrics.json").exists()
    paid_before_kill = GenerationCache(cache_path).count()

    resumed = run(make_config(*ARGS, f"run_dir={run_dir}", f"cache.path={cache_path}", "resume=true"))
    assert resumed.metrics["finished"]
    assert (run_dir / "problems.jsonl").read_bytes() == (reference.run_dir / "problems.jsonl").read_bytes()
    assert stable_samples(run_dir / "samples.jsonl") == stable_samples(reference.run_dir / "samples.jsonl")
    # no generation was paid for twice
    assert paid_before_kill + resumed.metrics["backend_calls"] == reference.metrics["backend_calls"]
    for key in ("accuracy", "cost_usd_per_million", "resolved_by_stage", "large_calls"):
        assert resumed.metrics[key] == reference.metrics[key]


def test_resume_drops_torn_lines(make_config, tmp_path, reference):
    run_dir, cache_path = tmp_path / "run", tmp_path / "cache.sqlite"
    run(make_config(*ARGS, f"run_dir={run_dir}", f"cache.path={cache_path}"))
    # what a kill in the middle of writing problem 5 would leave
    (run_dir / "metrics.json").unlink()
    lines = (run_dir / "problems.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "problems.jsonl").write_text("".join(lines[:5]) + '{"index": 5, "id": "5", "ans')
    with open(run_dir / "samples.jsonl", "a") as handle:
        handle.write('{"problem_id": "5", "stage": "s1", "te')
    resumed = run(make_config(*ARGS, f"run_dir={run_dir}", f"cache.path={cache_path}", "resume=true"))
    assert resumed.metrics["n_resumed"] == 5 and resumed.metrics["n_problems"] == 12
    assert (run_dir / "problems.jsonl").read_bytes() == (reference.run_dir / "problems.jsonl").read_bytes()


def test_resume_refuses_another_config(make_config, tmp_path):
    run_dir = tmp_path / "run"
    run(make_config(*ARGS, "task.limit=2", f"run_dir={run_dir}"))
    with pytest.raises(RunDirError, match="method.tau1"):
        run(make_config(*ARGS, "task.limit=2", "method.tau1=0.5", f"run_dir={run_dir}", "resume=true"))


def test_a_run_directory_in_use_is_refused_until_its_run_ends(make_config, tmp_path):
    from cope.runner import Run

    args = (*ARGS, "task.limit=2", f"run_dir={tmp_path / 'run'}", "resume=true")
    first = Run(make_config(*args))  # holds the directory, as a run still going would
    try:
        with pytest.raises(RunDirError, match=f"in use by another cope process \\(pid {os.getpid()}\\)"):
            Run(make_config(*args))
    finally:
        first.close()
    # the refused attempt wrote nothing; once the first run is closed, it resumes
    result = run(make_config(*args))
    assert result.metrics["n_problems"] == 2 and result.metrics["finished"]


def test_budget_stops_cleanly_and_a_larger_one_resumes(make_config, tmp_path):
    # short budgets keep a call's worst case (its full max_tokens) near its real cost
    args = [*ARGS, "method.max_tokens=16", "method.plan_max_tokens=16"]
    reference = run(make_config(*args, f"run_dir={tmp_path / 'reference'}",
                                f"cache.path={tmp_path / 'reference.sqlite'}"))
    run_dir, cache_path = tmp_path / "run", tmp_path / "cache.sqlite"
    full_cost = reference.metrics["cost_usd_total"]
    assert full_cost > 0
    stopped = run(make_config(*args, f"budget.max_usd={full_cost / 2}", f"run_dir={run_dir}",
                              f"cache.path={cache_path}"))
    m = stopped.metrics
    assert not m["finished"] and m["stopped_reason"].startswith("budget")
    assert 0 < m["n_problems"] < 12
    assert m["spent_usd"] <= full_cost / 2
    rows = read_jsonl(run_dir / "problems.jsonl")
    assert [r["index"] for r in rows] == list(range(len(rows)))

    resumed = run(make_config(*args, f"run_dir={run_dir}", f"cache.path={cache_path}", "resume=true"))
    assert resumed.metrics["finished"]
    assert (run_dir / "problems.jsonl").read_bytes() == (reference.run_dir / "problems.jsonl").read_bytes()


def test_large_call_budget(make_config, tmp_path, reference):
    stopped = run(make_config(*ARGS, "budget.max_large_calls=3"))
    assert not stopped.metrics["finished"] and "max_large_calls=3" in stopped.metrics["stopped_reason"]
    samples = read_jsonl(stopped.run_dir / "samples.jsonl")
    assert sum(s["model_role"] == "large" and not s["cache_hit"] for s in samples) <= 3
    assert reference.metrics["large_calls"] > 3


def test_a_killed_multirun_launched_again_pays_for_no_finished_work(tmp_path):
    """A sweep with a fixed hydra.sweep.dir and resume=true: SIGKILL while its second job runs,
    launch it again, and every job ends with the records of an uninterrupted sweep."""
    sweep = ["method.votes=3,5", "task.limit=6"]

    def launch_sweep(sweep_dir, cache):
        env = dict(os.environ, COPE_HOME=str(tmp_path / "home"), COPE_SCRIPTED_DELAY="0.01")
        return subprocess.Popen(
            [sys.executable, "-m", "cope.cli", "-m", *ARGS, f"cache.path={cache}", *sweep,
             f"hydra.sweep.dir={sweep_dir}", "resume=true"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    reference_dir = tmp_path / "reference"
    reference = launch_sweep(reference_dir, tmp_path / "reference.sqlite")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-2000:]

    sweep_dir, cache_path = tmp_path / "sweep", tmp_path / "cache.sqlite"
    proc = launch_sweep(sweep_dir, cache_path)
    deadline = time.time() + 120
    second = sweep_dir / "1" / "samples.jsonl"
    while time.time() < deadline and not (second.exists() and second.read_bytes().count(b"\n") >= 10):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (sweep_dir / "0" / "metrics.json").exists() and not (sweep_dir / "1" / "metrics.json").exists()
    paid_before_kill = GenerationCache(cache_path).count()

    relaunched = launch_sweep(sweep_dir, cache_path)
    _, err = relaunched.communicate(timeout=300)
    assert relaunched.returncode == 0, err[-2000:]
    first = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert first["backend_calls"] == 0 and first["n_resumed"] == 6  # finished job: no call
    for job in ("0", "1"):
        assert ((sweep_dir / job / "problems.jsonl").read_bytes()
                == (reference_dir / job / "problems.jsonl").read_bytes())
    assert GenerationCache(cache_path).count() == GenerationCache(tmp_path / "reference.sqlite").count()
    second_metrics = json.loads((sweep_dir / "1" / "metrics.json").read_text())
    assert paid_before_kill + second_metrics["backend_calls"] == GenerationCache(cache_path).count()
