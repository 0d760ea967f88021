"""Where a run is reported besides its directory: nowhere (`tracker=none`) or Weights & Biases.

A tracker sees the run's resolved config (secrets redacted), and at the end its metrics,
its per-problem records and its directory. W&B runs are offline unless WANDB_MODE says
otherwise, so they work without an account; `wandb sync` uploads them later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cope.errors import ConfigError
from cope.registry import Registry
from cope.secrets import redact

log = logging.getLogger(__name__)
TRACKERS: Registry = Registry("tracker")

PROBLEM_COLUMNS = ("index", "id", "answer", "gold", "correct", "resolved_stage", "cost_usd")


class Tracker:
    def start(self, config: dict[str, Any], run_dir: Path) -> None:
        """Called before the first generation."""

    def finish(self, metrics: dict[str, Any], problems: list[dict[str, Any]], run_dir: Path) -> None:
        """Called once, however the run ended."""


@TRACKERS.register("none")
class NoTracker(Tracker):
    def __init__(self, cfg) -> None:
        pass


def sweep_group() -> str | None:
    """The multirun a Hydra job belongs to (its sweep directory), or None for a single run."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return str(Path(hydra_cfg.sweep.dir))
    except ValueError:
        pass
    return None


@TRACKERS.register("wandb")
class WandbTracker(Tracker):
    def __init__(self, cfg) -> None:
        try:
            import wandb
        except ImportError:
            raise ConfigError("tracker=wandb needs wandb: pip install -e '.[wandb]'") from None
        self.wandb = wandb
        self.cfg = cfg
        self.run = None

    def start(self, config: dict[str, Any], run_dir: Path) -> None:
        mode = os.environ.get("WANDB_MODE") or self.cfg.mode
        group = self.cfg.group or sweep_group()
        self.run = self.wandb.init(
            project=self.cfg.project, entity=self.cfg.entity, group=group,
            name=run_dir.name if group is None else f"{run_dir.parent.name}/{run_dir.name}",
            job_type=config["method"]["name"], tags=list(self.cfg.tags),
            config=redact(config), dir=str(run_dir), mode=mode, reinit="finish_previous",
        )

    def finish(self, metrics: dict[str, Any], problems: list[dict[str, Any]], run_dir: Path) -> None:
        if self.run is None:
            return
        try:
            flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
            for key in ("resolved_by_stage", "cost_usd_per_million_by_stage",
                        "cost_usd_per_million_by_role", "calls_by_role"):
                for name, value in (metrics.get(key) or {}).items():
                    flat[f"{key}/{name}"] = value
            self.run.summary.update(redact(flat))
            table = self.wandb.Table(columns=list(PROBLEM_COLUMNS),
                                     data=[[row.get(c) for c in PROBLEM_COLUMNS] for row in problems])
            self.run.log({"problems": table})
            artifact = self.wandb.Artifact(f"run-{self.run.id}", type="cope-run")
            for name in ("config.yaml", "samples.jsonl", "problems.jsonl", "metrics.json"):
                if (run_dir / name).exists():
                    artifact.add_file(str(run_dir / name))
            self.run.log_artifact(artifact)
        finally:
            self.run.finish()
            self.run = None


def create_tracker(cfg) -> Tracker:
    return TRACKERS.get(cfg.name)(cfg)
