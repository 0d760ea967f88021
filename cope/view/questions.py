"""Question text of a run's problems, from its task config: records keep ids and answers,
the task's data keeps the questions."""

from __future__ import annotations

import functools
import json
from typing import Any

from omegaconf import OmegaConf


def questions(task_cfg: dict[str, Any] | None) -> tuple[dict[str, str], str | None]:
    """(problem id -> question, None) or ({}, why the questions cannot be shown)."""
    if not task_cfg:
        return {}, "the run's config has no task"
    return _load(json.dumps(task_cfg, sort_keys=True, default=str))


@functools.lru_cache(maxsize=64)
def _load(task_json: str) -> tuple[dict[str, str], str | None]:
    from cope.tasks import create_task

    try:
        task = create_task(OmegaConf.create(json.loads(task_json)))
        return {p.id: p.question for p in task.load()}, None
    except Exception as exc:  # any task's data may be missing here; the records still show
        return {}, f"question text unavailable ({type(exc).__name__}: {exc})"
