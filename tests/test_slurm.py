"""Sweeps on a real SLURM cluster: a single node on loopback from Debian's packages
(cope.testing.slurm_cluster), hydra/launcher=slurm through submitit, every job a full cope
run against the stub server, all sharing one generation cache through cache.shared_dir.

Without the packages or root this module is skipped with NOT CHECKED; with
COPE_REQUIRE_SLURM=1 (.ci/run) it fails instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cope.cache_shared import duplicate_work
from cope.testing.slurm_cluster import ACCOUNT, PARTITION, SlurmCluster, missing_programs
from cope.testing.stub_server import StubServer

from cluster_sweeps import (has_samples, holder_of, published_since, records, require,
                            shared_cache, shared_keys, sweep, sweep_args, wait_until)
from conftest import ROOT


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "a SLURM cluster needs root (slurmd starts jobs as their user)"
    missing = missing_programs()
    if missing:
        return (f"{', '.join(missing)} not installed (apt-get install slurmctld slurmd "
                "slurm-client slurmdbd munge mariadb-server)")
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require("SLURM", _unavailable(), "COPE_REQUIRE_SLURM")
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def slurm_launcher(*extra: str) -> list[str]:
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
            f"hydra.launcher.account={ACCOUNT}",
            "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10", *extra]


def array_of(sweep_dir: Path) -> str:
    """The SLURM array job a sweep was submitted as (submitit names its folders by it), or
    its one job."""
    arrays = {p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir()
              if p.name.split("_")[0].isdigit()}
    assert len(arrays) == 1, arrays
    return arrays.pop()


def test_a_sweep_runs_as_slurm_jobs_sharing_one_cache(cluster, stub, tmp_path):
    import time

    before = stub.counts["requests"]
    started = time.perf_counter()
    slurm = sweep(stub, cluster.env, tmp_path / "slurm", shared_cache(tmp_path),
                  *slurm_launcher())
    slurm_s = time.perf_counter() - started
    made = stub.counts["requests"] - before
    assert sorted(slurm) == [0, 1, 2, 3] and all(m["finished"] for m in slurm.values())

    # one array job of four tasks, each a job of its own in SLURM's accounting
    array = array_of(tmp_path / "slurm")
    jobs = cluster.wait_for_accounting(array, 4)
    assert {j["State"] for j in jobs} == {"COMPLETED"}
    # submitit's logs lie in the sweep directory
    assert list((tmp_path / "slurm" / ".submitit").rglob("*_log.out"))

    # the same sweep run locally, from a cache of its own: the same records, cell by cell
    local = tmp_path / "local"
    started = time.perf_counter()
    sweep(stub, cluster.env, local, [f"cache.path={tmp_path / 'local.sqlite'}"],
          "hydra/launcher=basic")
    local_s = time.perf_counter() - started
    assert records(tmp_path / "slurm") == records(local)

    # the generations the grid needs, made once each, or more when two jobs asked at once;
    # every generation a job made is published to its segment once
    work = duplicate_work(tmp_path / "shared")
    calls, unique = sum(m["backend_calls"] for m in slurm.values()), work["unique"]
    assert work["generated"] == calls == made and unique <= calls
    print(f"SLURM sweep: {calls} backend calls, {unique} unique generations, "
          f"{calls - unique} duplicates; {slurm_s:.1f} s on SLURM, {local_s:.1f} s locally")

    # launched again on fresh node-local caches, one job at a time: everything comes through
    # the shared directory
    again = tmp_path / "again"
    before = stub.counts["requests"]
    relaunched = sweep(stub, cluster.env, again,
                       [f"cache.path={again}-node-${{hydra:job.num}}.sqlite",
                        f"cache.shared_dir={tmp_path / 'shared'}"],
                       *slurm_launcher("hydra.launcher.array_parallelism=1"))
    assert stub.counts["requests"] == before
    assert all(m["backend_calls"] == 0 for m in relaunched.values())
    assert records(again) == records(local)
    # array_parallelism=1 (sbatch --array=0-3%1): no two tasks ran at once
    tasks = sorted(cluster.wait_for_accounting(array_of(again), 4), key=lambda j: j["Start"])
    assert all(later["Start"] >= earlier["End"] for earlier, later in zip(tasks, tasks[1:]))


@pytest.mark.parametrize("setting,message", [
    ("hydra.launcher.partition=nope", "invalid partition specified: nope"),
    ("hydra.launcher.account=nobody", "Invalid account"),
    ("hydra.launcher.timeout_min=720", "above partition debug's MaxTime (60 min)"),
])
def test_settings_slurm_would_refuse_fail_before_any_job_is_submitted(cluster, stub, tmp_path,
                                                                       setting, message):
    submitted = cluster.log("slurmctld").count("_slurm_rpc_submit_batch_job")
    args = [sys.executable, "-m", "cope.cli", "-m", "backend.name=scripted", "task.limit=1",
            "method.votes=2,3", "progress=false", *shared_cache(tmp_path),
            f"hydra.sweep.dir={tmp_path / 'sweep'}", *slurm_launcher(setting)]
    done = subprocess.run(args, cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "nothing was submitted" in done.stderr and "Traceback" not in done.stderr
    # slurmctld logs every submission it takes
    assert cluster.log("slurmctld").count("_slurm_rpc_submit_batch_job") == submitted


def test_a_cancelled_job_resumes_on_relaunch_and_pays_for_nothing_it_made(cluster, tmp_path):
    """scancel one task of the array mid-run; the same command again with resume=true
    finishes every cell, and no generation the first launch made is requested again."""
    sweep_dir = tmp_path / "sweep"
    with StubServer(latency_s=1.0) as slow:
        first = subprocess.Popen(
            [*sweep_args(slow, sweep_dir, shared_cache(tmp_path), *slurm_launcher())],
            cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples = sweep_dir / "1" / "samples.jsonl"
        wait_until(first, has_samples(samples), what="task 1's first two samples")
        task = f"{array_of(sweep_dir)}_1"
        assert task in subprocess.run(["squeue", "-h", "-o", "%i"], env=cluster.env,
                                      capture_output=True, text=True).stdout.split()
        subprocess.run(["scancel", task], env=cluster.env, check=True)
        _, err = first.communicate(timeout=600)
        assert first.returncode != 0  # the sweep reports the cancelled job
        assert not (sweep_dir / "1" / "metrics.json").exists() or not json.loads(
            (sweep_dir / "1" / "metrics.json").read_text())["finished"]
        cancelled = cluster.wait_for_accounting(task.split("_")[0], 4)
        assert any(j["JobID"] == task and j["State"].startswith("CANCELLED") for j in cancelled)
        shared = tmp_path / "shared"
        made = set(shared_keys(shared))
        segments = set(shared.iterdir())
        before = slow.counts["requests"]
        again = sweep(slow, cluster.env, sweep_dir, [*shared_cache(tmp_path), "resume=true"],
                      *slurm_launcher())
        requested = slow.counts["requests"] - before
    assert sorted(again) == [0, 1, 2, 3] and all(m["finished"] for m in again.values())
    # the relaunch's jobs publish what they generate to segments of their own
    relaunched = published_since(shared, segments)
    assert requested == len(relaunched) == sum(m["backend_calls"] for m in again.values())
    # the cancelled cell stopped with work left, and finished on the relaunch
    assert again[1]["n_resumed"] < again[1]["n_problems"] == 3
    # nothing the first launch finished was generated again
    assert made.isdisjoint(relaunched)
    print(f"relaunch after scancel: {requested} backend calls, {len(made)} generations reused")


def test_a_job_signalled_at_its_time_limit_is_requeued_and_continues_its_run(cluster,
                                                                             tmp_path):
    """SLURM warns a job before its time limit with the signal submitit asks for (USR2,
    hydra.launcher.signal_delay_s ahead), and submitit requeues it. Sent here to the job's
    process as slurmd would: the requeued job continues its run (resume=true) and asks for
    none of the generations it made before."""
    import signal

    sweep_dir, shared = tmp_path / "sweep", tmp_path / "shared"
    with StubServer(latency_s=1.0) as slow:
        running = subprocess.Popen(sweep_args(slow, sweep_dir, shared_cache(tmp_path),
                                              *slurm_launcher(), cells=["method.votes=3"]),
                                   cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        samples = sweep_dir / "0" / "samples.jsonl"
        wait_until(running, has_samples(samples), what="the job's first two samples")
        job = array_of(sweep_dir)  # one cell: a job, not an array
        os.kill(holder_of(samples), signal.SIGUSR2)
        # SLURM holds a requeued job back for a while before it may start again: let it go
        wait_until(running, lambda: "PENDING" in squeue_state(cluster, job),
                   what="the job to be requeued")
        made, segments = set(shared_keys(shared)), set(shared.iterdir())
        before = slow.counts["requests"]
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"],
                       env=cluster.env, check=True)
        _, err = running.communicate(timeout=600)
        requested = slow.counts["requests"] - before
    assert running.returncode == 0, err[-4000:]
    metrics = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["n_problems"] == 3
    # SLURM ran the job twice: until the signal, and requeued (the PENDING seen above).
    # submitit logs "Requeued job" after scontrol returns, and SLURM may stop the job
    # before that line is written, so it is there at most once
    [log] = (sweep_dir / ".submitit").rglob(f"{job}_0_log.out")
    # submitit's own lines (Hydra's logging repeats them in its format)
    lines = [line for line in log.read_text().splitlines() if line.startswith("submitit ")]
    assert sum(f"Requeued job {job} " in line for line in lines) <= 1
    assert sum("Job completed successfully" in line for line in lines) == 1
    later = published_since(shared, segments)
    assert made and made.isdisjoint(later) and requested == len(later)
    print(f"requeued at the time-limit signal: {len(made)} generations reused, "
          f"{requested} made after")


def squeue_state(cluster, job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=cluster.env,
                          capture_output=True, text=True).stdout
