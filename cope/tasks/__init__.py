"""Tasks by name (`task=...`)."""

from cope.registry import Registry

TASKS: Registry = Registry("task")

# importing the modules registers their tasks
from cope.tasks import agent, code_data, math_data, open_ended  # noqa: E402,F401
from cope.tasks.base import Plan, Problem, Task, Verdict  # noqa: E402


def create_task(cfg) -> Task:
    return TASKS.get(cfg.name)(cfg)


__all__ = ["TASKS", "Plan", "Problem", "Task", "Verdict", "create_task"]
