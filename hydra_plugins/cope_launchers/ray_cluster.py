"""hydra/launcher=ray_cluster: hydra-ray-launcher's Ray launcher with cope's checks and
retries.

Before anything is submitted it refuses a sweep whose cache is unsafe on several machines,
a cluster it cannot reach (Ray's own message) and jobs no node of the cluster has the
resources for (Ray would leave them pending for ever). A job whose Ray worker dies is retried
by Ray (`ray.remote`'s `max_retries`) and the retry continues the dead worker's run
(resume=true), so nothing it finished is paid for again; a job that dies more often than
that is reported by its number, after every other job has finished. A run that ends with an
error (a config error, a backend that went down) is a failed job, as under the basic
launcher, and is not retried: it would fail the same way again.
"""

from __future__ import annotations

import logging
import socket
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict

from cope.errors import ConfigError
from cope.launch_checks import check_shared_cache, refused_before_submitting

try:  # Hydra imports every plugin module at start-up, with or without cope[ray]
    import ray
    from hydra_plugins.hydra_ray_launcher._launcher_util import _run_job
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
except ImportError:  # pragma: no cover - the ray extra is not installed
    RayLauncher = None

log = logging.getLogger(__name__)


class CellExited(RuntimeError):
    """A cell's run called sys.exit (cope's CLI does on an error). Raised as an ordinary
    exception, Hydra records the job as failed; a SystemExit would leave the Ray worker,
    which Ray takes for a dead worker and retries."""


def probe(address: str | None, timeout_s: float = 10.0) -> None:
    """A host:port address nothing answers at is refused at once: ray.init would wait for a
    GCS there for minutes."""
    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:6379
    if not host or not port.isdigit():
        return  # "auto", "local" or None: ray.init finds the cluster itself, or says why not
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ConfigError(f"hydra/launcher=ray_cluster: nothing answers at the Ray address "
                          f"{address!r} ({error}); nothing was submitted. Start the cluster "
                          "(ray start --head) or set hydra.launcher.ray.init.address (or "
                          "RAY_ADDRESS) to its head node's address.") from None


def connect(init: Mapping[str, Any]) -> None:
    """ray.init with the launcher's arguments; a cluster that cannot be reached is a
    ConfigError with Ray's message."""
    if ray.is_initialized():
        return
    probe(init.get("address"))
    try:
        ray.init(**init)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise ConfigError(f"hydra/launcher=ray_cluster: cannot reach the Ray cluster at "
                          f"{init.get('address')!r}, nothing was submitted: {error}") from None


RESOURCE_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def check_resources(remote: Mapping[str, Any], nodes: list[dict[str, Any]]) -> None:
    """Each job must fit on one live node: Ray keeps a job no node can hold pending."""
    wanted = {RESOURCE_NAMES[k]: float(v) for k, v in remote.items()
              if k in RESOURCE_NAMES and v}
    wanted.update({k: float(v) for k, v in (remote.get("resources") or {}).items()})
    live = [node["Resources"] for node in nodes if node.get("Alive")]
    if any(all(have.get(k, 0.0) >= v for k, v in wanted.items()) for have in live):
        return
    closest = max(live, default={}, key=lambda have: sum(have.get(k, 0.0) >= v
                                                         for k, v in wanted.items()))
    largest = ", ".join(f"{k} {v:g}" for k, v in sorted(closest.items()) if k in wanted)
    asked = ", ".join(f"{k} {v:g}" for k, v in wanted.items())
    raise ConfigError(f"hydra/launcher=ray_cluster: each job asks for {asked} "
                      f"(hydra.launcher.ray.remote), but no live node of the cluster has that "
                      f"(the closest has {largest or 'none of it'}); nothing was submitted. "
                      "Ask for less, e.g. hydra.launcher.ray.remote.num_gpus=0 on CPU nodes.")


def run_cell(hydra_context, sweep_config, task_function, singleton_state, marker: str,
             launch: str):
    """One sweep cell in a Ray worker. `marker` holds the id of the launch that started the
    cell: finding its own id there, a retry knows the cell's first worker died and
    continues that run."""
    path = Path(marker)
    if path.exists() and path.read_text() == launch:
        with open_dict(sweep_config):
            sweep_config.resume = True
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(launch)

    def cell(config):
        try:
            return task_function(config)
        except SystemExit as stop:
            if stop.code:
                raise CellExited(f"the run exited with code {stop.code}") from None
            return None

    return _run_job(hydra_context, sweep_config, cell, singleton_state)


if RayLauncher is not None:
    class CheckedRayLauncher(RayLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
            from hydra.core.singleton import Singleton
            from hydra.core.utils import configure_log, setup_globals

            remote = OmegaConf.to_container(self.ray_cfg.remote, resolve=True) or {}
            with refused_before_submitting():
                check_shared_cache(self.config, "ray_cluster")
                connect(OmegaConf.to_container(self.ray_cfg.init, resolve=True) or {})
                check_resources(remote, ray.nodes())
            setup_globals()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            # resolved here, once: a relative dir would land in each worker's working
            # directory, and ${now:...} would be a different time on each worker
            sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
            sweep_dir.mkdir(parents=True, exist_ok=True)
            log.info(f"Ray cluster: launching {len(job_overrides)} jobs into {sweep_dir}")
            launch = uuid.uuid4().hex
            job = ray.remote(**remote)(run_cell) if remote else ray.remote(run_cell)
            refs = {}
            for idx, overrides in enumerate(job_overrides, initial_job_idx):
                cell = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                          list(overrides))
                with open_dict(cell):
                    cell.hydra.job.id = f"ray_{launch[:8]}_{idx}"
                    cell.hydra.job.num = idx
                    cell.hydra.sweep.dir = str(sweep_dir)
                log.info(f"\t#{idx} : {' '.join(overrides)}")
                refs[idx] = job.remote(self.hydra_context, cell, self.task_function,
                                       Singleton.get_state(),
                                       str(sweep_dir / ".ray" / f"{idx}.launch"), launch)
            returns, lost = [], []
            for idx, ref in refs.items():
                try:
                    returns.append(ray.get(ref))
                except ray.exceptions.RayError as error:
                    lost.append(f"job {idx}: {type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''}")
            if lost:
                print("error: hydra/launcher=ray_cluster: these jobs did not finish (their "
                      "workers died more often than ray.remote's max_retries allows):\n  "
                      + "\n  ".join(lost) + "\nWhat they finished is in the cache: launch "
                      "the same sweep again with resume=true.", file=sys.stderr)
                raise SystemExit(1)
            return returns
