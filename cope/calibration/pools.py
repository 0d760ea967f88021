"""Pools and what a cascade structure makes of them.

A pool is an ordinary run with `method.early_exit=false` (experiment=pool): every stage ran on
every problem, at the largest vote count of a search. A *structure* is what changes the
generations a cascade asks for: its vote count and its stage order. Thresholds and the
threshold operator do not: a stage's samples, vote and the plan it passes on are the same
whichever stage answers. So one survey per structure, a run that reads the pool's cache and
never generates (`cache.mode=survey`), gives every stage's vote on every problem, and every
threshold setting of that structure follows from it exactly (cope.calibration.search).

A structure the pool does not cover (fewer votes change stage 1's majority, so stage 2 is
handed another g^S and asks for executions the pool never made) shows as missing
generations; `generate` makes them once, through the models, into the pool's cache.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf

from cope.config import CopeConfig
from cope.errors import ConfigError
from cope.records import CONFIG, METRICS, PROBLEMS, read_complete_lines
from cope.results.method_defaults import method_yaml
from cope.runner import Run


@dataclass(frozen=True)
class Structure:
    votes: int
    order: tuple[str, ...]
    voting: bool = True  # whether any stage votes (FrugalGPT's do not: votes means nothing)

    @property
    def label(self) -> str:
        order = f"order={','.join(self.order)}"
        return f"votes={self.votes} {order}" if self.voting else order


@dataclass
class Pool:
    """A finished pool run: its recorded config, problems and cache."""

    run_dir: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    cache: Path

    @classmethod
    def load(cls, run_dir: str | Path, cache: str | Path | None = None) -> Pool:
        run_dir = Path(run_dir)
        if not (run_dir / CONFIG).is_file():
            raise ConfigError(f"{run_dir}: not a run directory (no {CONFIG}).")
        config = yaml.safe_load((run_dir / CONFIG).read_text())
        method = config["method"]
        if method.get("early_exit", True):
            raise ConfigError(
                f"{run_dir}: {method['name']} ran with early exit, so its later stages are "
                "missing wherever an earlier one answered. Make a pool: the same command with "
                "experiment=pool (method.early_exit=false).")
        metrics = run_dir / METRICS
        if not metrics.is_file() or not yaml.safe_load(metrics.read_text()).get("finished"):
            raise ConfigError(f"{run_dir}: the pool has not finished (resume=true finishes it).")
        cache_path = Path(cache or config["cache"]["path"] or "")
        if not cache_path.is_file():
            raise ConfigError(f"{run_dir}: its generation cache {cache_path} is not here; "
                              "pass it (--cache) or import the pool's archive (--archive).")
        return cls(run_dir, config, read_complete_lines(run_dir / PROBLEMS), cache_path)

    @property
    def method(self) -> str:
        return self.config["method"]["name"]

    @property
    def ids(self) -> list[str]:
        return [row["id"] for row in self.rows]

    @property
    def votes(self) -> int:
        return int(self.config["method"]["votes"])

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self.config["method"]["order"])

    def voting_stages(self) -> list[str]:
        """Stages whose vote count is the method's `votes` (`${method.votes}` in conf/)."""
        written = (method_yaml(self.method) or {}).get("stages") or {}
        stages = self.config["method"]["stages"]
        if written:
            return [name for name in stages
                    if str((written.get(name) or {}).get("votes")) == "${method.votes}"]
        return [name for name, stage in stages.items()
                if stage["votes"] == self.votes and self.votes > 1]

    def apply_structure(self, method: Any, structure: Structure) -> None:
        """Set a method section's votes (the method's and each voting stage's) and order."""
        method["votes"] = structure.votes
        for name in self.voting_stages():
            method["stages"][name]["votes"] = structure.votes
        method["order"] = list(structure.order)

    def structure_config(self, structure: Structure) -> DictConfig:
        """The pool's config changed to `structure`, all stages run."""
        cfg = OmegaConf.merge(OmegaConf.structured(CopeConfig), self.config)
        unknown = [name for name in structure.order if name not in cfg.method.stages]
        if unknown:
            raise ConfigError(f"order {','.join(structure.order)}: {self.method} has no stage "
                              f"{', '.join(unknown)} (it has {', '.join(cfg.method.stages)}).")
        self.apply_structure(cfg.method, structure)
        cfg.method.early_exit = False
        cfg.cache.path = str(self.cache)
        cfg.cache.shared_dir = None
        cfg.resume = False
        cfg.progress = False
        cfg.tracker.name = "none"
        return cfg


@dataclass
class StageTable:
    """Every stage of one structure on every pool problem: arrays of shape (stages, problems)."""

    structure: Structure
    ids: list[str]
    stages: list[str]
    rules: list[str]  # each stage's confidence rule
    thresholded: list[bool]  # whether the stage has a threshold (the last always answers)
    confidence: np.ndarray
    answered: np.ndarray  # the vote has an answer (an all-abstaining stage cannot accept)
    correct: np.ndarray
    cost: np.ndarray  # USD the stage itself spent on the problem
    missing: dict[str, int] = field(default_factory=dict)  # model alias -> generations

    @property
    def covered(self) -> bool:
        return not self.missing


def survey(pool: Pool, structure: Structure, scratch: str | Path | None = None,
           backends: dict | None = None) -> StageTable:
    """Every stage of `structure` on the pool's problems, from the pool's cache alone."""
    with tempfile.TemporaryDirectory(prefix="cope-survey-", dir=scratch) as tmp:
        cfg = pool.structure_config(structure)
        cfg.cache.mode = "survey"
        cfg.run_dir = str(Path(tmp) / "run")
        run = Run(cfg, backends)
        result = run.execute()
        by_id = {problem.id: problem for problem in run.problems}
        return _table(structure, result.problems, by_id, run.task, cfg,
                      result.metrics.get("missing_generations") or {})


def generate(pool: Pool, structure: Structure, scratch: str | Path | None = None,
             backends: dict | None = None) -> dict[str, Any]:
    """Make the generations `structure` lacks, through the models, into the pool's cache;
    the metrics of that run."""
    with tempfile.TemporaryDirectory(prefix="cope-fill-", dir=scratch) as tmp:
        cfg = pool.structure_config(structure)
        cfg.cache.mode = "readwrite"
        cfg.run_dir = str(Path(tmp) / "run")
        return Run(cfg, backends).execute().metrics


def _table(structure: Structure, rows: list[dict], problems: dict, task, cfg: DictConfig,
           missing: dict[str, int]) -> StageTable:
    stages = list(structure.order)
    shape = (len(stages), len(rows))
    confidence, cost = np.zeros(shape), np.zeros(shape)
    answered, correct = np.zeros(shape, bool), np.zeros(shape, bool)
    judged: dict[tuple[str, str | None], bool] = {}
    for p, row in enumerate(rows):
        by_stage = row["cost"]["by_stage_usd"]
        for s, stage in enumerate(row["stages"]):
            answer = stage["answer"]
            confidence[s, p] = stage["consensus"]
            answered[s, p] = answer is not None
            key = (row["id"], answer)
            if key not in judged:
                judged[key] = bool(task.is_correct(problems[row["id"]], answer))
            correct[s, p] = judged[key]
            cost[s, p] = by_stage.get(stage["stage"], 0.0)
    rules = [cfg.method.stages[name].confidence for name in stages]
    thresholded = [cfg.method.stages[name].threshold is not None for name in stages[:-1]]
    for name, rule in zip(stages, rules):
        if rule == "perplexity":
            raise ConfigError(f"stage {name}: confidence=perplexity decides by max_perplexity, "
                              "which calibration does not search yet.")
    return StageTable(structure, [row["id"] for row in rows], stages, rules,
                      thresholded + [False], confidence, answered, correct, cost, dict(missing))
