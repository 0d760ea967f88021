"""Sweeps on a real Ray cluster: `ray start --head` on this machine (cope.testing.ray_cluster),
hydra/launcher=ray_cluster through hydra-ray-launcher, every job a full cope run in a Ray
worker against the stub server, all sharing one generation cache through cache.shared_dir.

Without Ray and hydra-ray-launcher (cope[ray]) this module is skipped with NOT CHECKED; with
COPE_REQUIRE_RAY=1 (.ci/run) it fails instead."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cope.cache_shared import duplicate_work, segment_keys
from cope.testing.ray_cluster import RayCluster, ray_program
from cope.testing.stub_server import StubServer

from cluster_sweeps import (has_samples, holder_of, published_since, records, require,
                            shared_cache, sweep, sweep_args, wait_until)
from conftest import ROOT


def _unavailable() -> str | None:
    if ray_program() is None or importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install -e '.[ray]')"
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        return "hydra-ray-launcher is not installed (pip install -e '.[ray]')"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require("Ray", _unavailable(), "COPE_REQUIRE_RAY")
    with RayCluster(tmp_path_factory.mktemp("ray"), cpus=2) as running:
        yield running


@pytest.fixture(scope="module")
def local_records(stub, tmp_path_factory):
    """The sweep run locally, from a cache of its own: what every Ray sweep must record."""
    root = tmp_path_factory.mktemp("local")
    started = time.perf_counter()
    sweep(stub, os.environ, root / "sweep", [f"cache.path={root / 'local.sqlite'}"],
          "hydra/launcher=basic")
    print(f"local sweep: {time.perf_counter() - started:.1f} s")
    return records(root / "sweep")


def ray_launcher(cluster, *extra: str) -> list[str]:
    return ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={cluster.address}",
            "hydra.launcher.ray.remote.num_cpus=1", "hydra.launcher.ray.remote.num_gpus=0",
            *extra]


def segment_pid(segment: Path) -> int:
    return int(segment.name.rsplit("-", 2)[1])  # <host>-<pid>-<start ns>.jsonl


def test_a_sweep_runs_as_ray_jobs_sharing_one_cache(cluster, stub, local_records, tmp_path):
    before = stub.counts["requests"]
    started = time.perf_counter()
    ray = sweep(stub, cluster.env, tmp_path / "ray", shared_cache(tmp_path),
                *ray_launcher(cluster))
    wall_s = time.perf_counter() - started
    made = stub.counts["requests"] - before
    assert sorted(ray) == [0, 1, 2, 3] and all(m["finished"] for m in ray.values())
    # the jobs ran in worker processes of this cluster: each that made generations
    # published them from its own pid
    segments = sorted((tmp_path / "shared").iterdir())
    assert segments and len(segments) <= 4
    assert {segment_pid(s) for s in segments} <= cluster.worker_pids()
    assert records(tmp_path / "ray") == local_records

    work = duplicate_work(tmp_path / "shared")
    calls = sum(m["backend_calls"] for m in ray.values())
    assert work["generated"] == calls == made and work["unique"] <= calls
    print(f"Ray sweep: {calls} backend calls, {work['unique']} unique generations, "
          f"{work['duplicates']} duplicates, {wall_s:.1f} s")

    # launched again on fresh node-local caches: everything comes through the shared directory
    again = tmp_path / "again"
    before = stub.counts["requests"]
    relaunched = sweep(stub, cluster.env, again,
                       [f"cache.path={again}-node-${{hydra:job.num}}.sqlite",
                        f"cache.shared_dir={tmp_path / 'shared'}"], *ray_launcher(cluster))
    assert stub.counts["requests"] == before
    assert all(m["backend_calls"] == 0 for m in relaunched.values())
    assert records(again) == local_records


def kill_mid_job(cluster, slow, tmp_path, *launcher: str):
    """Start the sweep one job at a time, SIGKILL the Ray worker running job 0 (whose
    generations are all new) once it has made two; (the sweep, the dead worker's segment's
    keys, the segments existing then)."""
    sweep_dir = tmp_path / "sweep"
    running = subprocess.Popen(sweep_args(slow, sweep_dir, shared_cache(tmp_path), *launcher),
                               cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    samples = sweep_dir / "0" / "samples.jsonl"
    wait_until(running, has_samples(samples), what="job 0's first two samples")
    worker = holder_of(samples)
    assert worker in cluster.worker_pids()
    os.kill(worker, signal.SIGKILL)
    shared = tmp_path / "shared"
    [dead] = [s for s in shared.iterdir() if segment_pid(s) == worker]
    return running, segment_keys(dead), set(shared.iterdir())


def test_a_worker_killed_mid_job_is_retried_and_pays_for_nothing_it_made(cluster, local_records,
                                                                        tmp_path):
    # two CPUs a job on a two-CPU cluster: the jobs run one after another
    with StubServer(latency_s=1.0) as slow:
        running, made, segments = kill_mid_job(
            cluster, slow, tmp_path, *ray_launcher(cluster, "hydra.launcher.ray.remote.num_cpus=2"))
        before = slow.counts["requests"]
        _, err = running.communicate(timeout=600)
        requested = slow.counts["requests"] - before
    assert running.returncode == 0, err[-4000:]
    sweep_dir = tmp_path / "sweep"
    metrics = {int(p.parent.name): json.loads(p.read_text())
               for p in sweep_dir.glob("*/metrics.json")}
    assert sorted(metrics) == [0, 1, 2, 3] and all(m["finished"] for m in metrics.values())
    assert records(sweep_dir) == local_records
    later = published_since(tmp_path / "shared", segments)
    assert made and set(made).isdisjoint(later)  # the retry took them from the cache
    assert requested == len(later)
    print(f"worker killed mid-job: Ray retried it; {len(made)} generations reused, "
          f"{requested} made after the kill")


def test_a_job_whose_worker_dies_without_retries_is_reported_and_resumes(cluster,
                                                                         local_records,
                                                                         tmp_path):
    launcher = ray_launcher(cluster, "hydra.launcher.ray.remote.num_cpus=2",
                            "hydra.launcher.ray.remote.max_retries=0")
    with StubServer(latency_s=1.0) as slow:
        running, made, _ = kill_mid_job(cluster, slow, tmp_path, *launcher)
        _, err = running.communicate(timeout=600)
        assert running.returncode == 1
        assert "job 0:" in err and "resume=true" in err and "Traceback" not in err, err[-3000:]
        # every other job finished
        sweep_dir = tmp_path / "sweep"
        for cell in (1, 2, 3):
            assert json.loads((sweep_dir / str(cell) / "metrics.json").read_text())["finished"]
        segments = set((tmp_path / "shared").iterdir())
        before = slow.counts["requests"]
        again = sweep(slow, cluster.env, sweep_dir, [*shared_cache(tmp_path), "resume=true"],
                      *launcher)
        requested = slow.counts["requests"] - before
    assert all(m["finished"] for m in again.values()) and records(sweep_dir) == local_records
    later = published_since(tmp_path / "shared", segments)
    assert set(made).isdisjoint(later) and requested == len(later)


def test_a_run_that_fails_is_a_failed_job_and_is_not_retried(cluster, stub, tmp_path):
    # cope's CLI exits 2 on a config error; as a SystemExit leaving the worker, Ray would
    # take it for a dead worker and run the cell again (max_retries: 3)
    sweep_dir = tmp_path / "sweep"
    args = [*sweep_args(stub, sweep_dir, shared_cache(tmp_path), *ray_launcher(cluster),
                        cells=["task.ids=[0],[nope]"])]
    done = subprocess.run(args, cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode != 0
    assert "CellExited: the run exited with code 2" in done.stderr, done.stderr[-3000:]
    assert "workers died" not in done.stderr
    assert json.loads((sweep_dir / "0" / "metrics.json").read_text())["finished"]
    [job_log] = (sweep_dir / "1").glob("*.log")
    assert job_log.read_text().count("no problems with ids ['nope']") == 1  # one attempt


@pytest.mark.parametrize("setting,message", [
    ("hydra.launcher.ray.init.address=127.0.0.1:9", "nothing answers at the Ray address"),
    ("hydra.launcher.ray.remote.num_gpus=1", "no live node of the cluster has that"),
    ("cache.shared_dir=null", "cache.shared_dir is not set"),
])
def test_settings_ray_cannot_run_fail_before_any_job_is_submitted(cluster, tmp_path, setting,
                                                                   message):
    workers = cluster.worker_pids()
    args = [sys.executable, "-m", "cope.cli", "-m", "backend.name=scripted", "task.limit=1",
            "method.votes=2,3", "progress=false", *shared_cache(tmp_path),
            f"hydra.sweep.dir={tmp_path / 'sweep'}", *ray_launcher(cluster), setting]
    done = subprocess.run(args, cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert cluster.worker_pids() == workers  # no job reached a worker
    assert not (tmp_path / "sweep" / "0").exists()
