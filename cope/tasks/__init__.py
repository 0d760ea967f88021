"""Tasks by name (`task=...`). A task's module is imported when the task is chosen, so a
GSM8K run does not load the sandbox, the code datasets or the text-game environments."""

from __future__ import annotations

import importlib

from cope.errors import ConfigError, unknown_name
from cope.tasks.base import Plan, Problem, Task, Vote

# name -> (module, class)
TASKS: dict[str, tuple[str, str]] = {
    "gsm8k": ("cope.tasks.math_data", "GSM8K"),
    "math500": ("cope.tasks.math_data", "MATH500"),
    "aime2024": ("cope.tasks.math_data", "AIME2024"),
    "mbpp": ("cope.tasks.code_data", "MBPP"),
    "humaneval": ("cope.tasks.code_data", "HumanEval"),
    "mt_bench": ("cope.tasks.open_ended", "MTBench"),
    "textworld": ("cope.tasks.agent", "TextWorldTask"),
    "alfworld": ("cope.tasks.agent", "ALFWorldTask"),
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ConfigError(unknown_name("task", name, sorted(TASKS)))
    module, attribute = TASKS[name]
    return getattr(importlib.import_module(module), attribute)


def create_task(cfg) -> Task:
    return task_class(cfg.name)(cfg)


__all__ = ["TASKS", "Plan", "Problem", "Task", "Vote", "create_task", "task_class"]
