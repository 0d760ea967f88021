"""What the SLURM and Ray tests share: one small COPE sweep against the stub server, run
through a launcher with per-job SQLite files and one shared segment directory, and what it
left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cope.cache_shared import segment_keys

from conftest import ROOT

CELLS = ["method.votes=2,3", "method.tau1=0.5,0.75"]  # 4 cells


def require(engine: str, reason: str | None, required_by: str) -> None:
    """Skip loudly when `engine` cannot run here, or fail when `required_by` (an environment
    variable .ci/run sets) says it must."""
    if reason is None:
        return
    if os.environ.get(required_by):
        pytest.fail(f"{required_by} is set, but {reason}")
    pytest.skip(f"NOT CHECKED: sweeps on a real {engine} cluster, because {reason}")


def sweep_args(stub, sweep_dir: Path, cache: list[str], *launcher: str,
               cells: list[str] = CELLS) -> list[str]:
    """COPE on 3 GSM8K problems, both roles served by the stub, as a multirun."""
    models = []
    for alias in ("gpt-4o-mini", "gpt-4o"):
        models += [f"models.{alias}.base_url={stub.base_url}", f"models.{alias}.api_key_env=null"]
    return [sys.executable, "-m", "cope.cli", "-m", "pair.roles.small=gpt-4o-mini",
            "pair.roles.large=gpt-4o", "task.limit=3", "progress=false", *models, *cells, *cache,
            f"hydra.sweep.dir={sweep_dir}", *launcher]


def sweep(stub, env, sweep_dir: Path, cache: list[str], *launcher: str):
    done = subprocess.run(sweep_args(stub, sweep_dir, cache, *launcher), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return {int(p.parent.name): json.loads(p.read_text())
            for p in sweep_dir.glob("*/metrics.json")}


def shared_cache(root: Path) -> list[str]:
    # each job its own SQLite file, as on a node-local disk; one shared segment directory
    return [f"cache.path={root / 'node'}-${{hydra:job.num}}.sqlite",
            f"cache.shared_dir={root / 'shared'}"]


def records(sweep_dir: Path) -> dict[int, bytes]:
    return {int(p.parent.name): p.read_bytes() for p in sweep_dir.glob("*/problems.jsonl")}


def holder_of(path: Path) -> int | None:
    """The process that has `path` open (a cope run keeps its samples.jsonl open)."""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:  # the process ended, or is not ours to look at
            continue
    return None


def shared_keys(shared: Path) -> list[str]:
    """The cache key of every line in the shared directory's segments, duplicates kept."""
    return [key for segment in sorted(shared.iterdir()) if segment.is_file()
            for key in segment_keys(segment)]


def wait_until(running: subprocess.Popen, ready: Callable[[], bool], timeout_s: float = 300,
               what: str = "the sweep to get there") -> None:
    """Poll `ready` while the sweep runs; a sweep that ends first, or a deadline passed,
    fails the test with the sweep's stderr (read after killing it: a live sweep's stderr
    would block the read)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if running.poll() is not None or time.monotonic() > deadline:
            running.kill()
            _, err = running.communicate()
            pytest.fail(f"waited in vain for {what} (exit {running.returncode}):\n"
                        f"{(err or '')[-4000:]}")
        time.sleep(0.3)


def has_samples(samples: Path, count: int = 2) -> Callable[[], bool]:
    return lambda: samples.exists() and samples.read_text().count("\n") >= count


def published_since(shared: Path, segments: set[Path]) -> list[str]:
    """The keys of the segments that appeared in `shared` since it held `segments`: what
    processes started since then generated."""
    return [key for path in set(shared.iterdir()) - segments for key in segment_keys(path)]
