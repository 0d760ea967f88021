"""Checks a sweep passes before a cluster launcher submits anything: hydra/launcher=slurm is
submitit's SLURM launcher with these checks first (CheckedSlurmLauncher).

- On several machines (hydra/launcher=slurm or ray_cluster), a generation cache without
  `cache.shared_dir` is refused: each node would fill its own SQLite file and pay for what
  another node already made, or, with the file on a shared filesystem, several machines
  would write one SQLite database over the network, which SQLite does not support.
- SLURM is asked whether it would accept the jobs (`sbatch --test-only` with the launcher's
  partition, account, time limit and resources), so a partition or account that does not
  exist fails with SLURM's own message and nothing submitted, instead of a traceback; a time
  limit above the partition's MaxTime, which SLURM accepts and never starts, is refused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from cope.errors import ConfigError


@contextmanager
def refused_before_submitting() -> Iterator[None]:
    """A failed check ends the launch with its message and exit code 2, not a traceback:
    nothing has been submitted yet."""
    try:
        yield
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def check_shared_cache(config: DictConfig, launcher: str) -> None:
    cache = config.cache
    if cache.mode == "readwrite" and not cache.shared_dir:
        raise ConfigError(
            f"hydra/launcher={launcher} runs jobs on several machines, but cache.shared_dir is "
            "not set: each node would pay again for what another made, and one SQLite file on a "
            "shared filesystem is not safe. Put the cache on a node-local disk and share "
            "through a directory every node sees, e.g. "
            "cache.path=/tmp/cope-${hydra:job.num}.sqlite cache.shared_dir=/shared/cope-cache")


def sbatch_test_args(launcher: Mapping[str, Any]) -> list[str]:
    """sbatch options for what submitit would ask of SLURM for one job."""
    args = ["--test-only", f"--time={int(launcher['timeout_min'])}",
            f"--nodes={int(launcher['nodes'])}",
            f"--ntasks-per-node={int(launcher['tasks_per_node'])}"]
    for option, key in (("--partition", "partition"), ("--account", "account"),
                        ("--qos", "qos"), ("--constraint", "constraint")):
        if launcher.get(key):
            args.append(f"{option}={launcher[key]}")
    if launcher.get("cpus_per_task"):
        args.append(f"--cpus-per-task={int(launcher['cpus_per_task'])}")
    if launcher.get("mem_gb"):
        args.append(f"--mem={int(launcher['mem_gb'])}G")
    if launcher.get("gpus_per_node"):
        args.append(f"--gpus-per-node={int(launcher['gpus_per_node'])}")
    return [*args, "--wrap", "true"]


def slurm_minutes(text: str) -> float:
    """A SLURM time limit (UNLIMITED, [D-]HH:MM:SS, HH:MM, MM) in minutes."""
    if text in ("UNLIMITED", "INFINITE"):
        return float("inf")
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:
        minutes = parts[0]
    elif len(parts) == 2:
        minutes = parts[0] + parts[1] / 60
    else:
        minutes = parts[0] * 60 + parts[1] + parts[2] / 60
    return minutes + int(days or 0) * 24 * 60


def partition_limit(partition: str | None) -> tuple[str, float] | None:
    """(name, MaxTime in minutes) of the partition jobs go to (the default one if None)."""
    out = subprocess.run(["scontrol", "show", "partition", "-o"], capture_output=True,
                         text=True, timeout=60).stdout
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if (partition is None and fields.get("Default") == "YES") or \
                fields.get("PartitionName") == partition:
            return fields["PartitionName"], slurm_minutes(fields.get("MaxTime", "UNLIMITED"))
    return None


def check_slurm(launcher: Mapping[str, Any]) -> None:
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError("hydra/launcher=slurm: sbatch is not on PATH; launch the sweep from a "
                          "machine with SLURM's client (a login node).")
    done = subprocess.run([sbatch, *sbatch_test_args(launcher)],
                          capture_output=True, text=True, timeout=60)
    # --test-only reports on stderr either way; a refusal exits non-zero
    if done.returncode != 0:
        raise ConfigError(f"hydra/launcher=slurm: SLURM would refuse these jobs, nothing was "
                          f"submitted: {done.stderr.strip() or done.stdout.strip()}")
    # SLURM accepts a job above its partition's MaxTime, and leaves it pending for ever
    limit = partition_limit(launcher.get("partition"))
    if limit is not None and launcher["timeout_min"] > limit[1]:
        raise ConfigError(f"hydra/launcher=slurm: hydra.launcher.timeout_min="
                          f"{launcher['timeout_min']} is above partition {limit[0]}'s MaxTime "
                          f"({limit[1]:g} min), where SLURM would leave the jobs pending "
                          "(PartitionTimeLimit); nothing was submitted.")
