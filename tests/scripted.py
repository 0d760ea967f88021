"""Helpers to drive the stage engine with a scripted backend (no model involved)."""

from __future__ import annotations

import asyncio

from cope.backends.scripted import ScriptedBackend
from cope.cache import GenerationCache
from cope.engine import CascadeMethod, StageSpec
from cope.generator import Generator, ModelBinding
from cope.tasks.base import Problem
from cope.tasks.math import EXECUTOR, GOAL_PLANNER, GUIDELINE_PLANNER, MathTask

from conftest import compose_config

PROBLEM = Problem(id="p1", question="What is 4 + 5?", gold="9", index=0)


class InlineMath(MathTask):
    name = "inline"

    def load(self):
        return [PROBLEM]


def boxed(answer):
    return "I am not sure." if answer is None else f"Therefore, the final answer is: $\\boxed{{{answer}}}$."


def cope_responder(s1=None, s2=None, s3="9"):
    """S1 executions answer s1[i], S2 executions s2[i], the large executor s3.
    Plans name their author and sample index, so tests can see which plan went where."""

    def respond(request):
        system, user = request.messages[0][1], request.messages[-1][1]
        i = request.sample_index
        if system == GOAL_PLANNER:
            return f"goal by {request.model_identity} #{i}"
        if system == GUIDELINE_PLANNER:
            return f"guideline by {request.model_identity} #{i}"
        assert system == EXECUTOR
        if request.model_identity == "large":
            return boxed(s3)
        if "Guideline:" in user:
            return boxed(s2[i])
        return boxed(s1[i])

    return respond


def cope_stages(*overrides, order=None):
    cfg = compose_config(list(overrides))
    names = order or list(cfg.method.order)
    return [StageSpec.from_config(name, cfg.method.stages[name]) for name in names]


def build(stages, responder, threshold_op="gt", seed=0, cache=None):
    backend = ScriptedBackend(responder)
    bindings = {alias: ModelBinding(alias, alias, backend) for alias in ("small", "large")}
    generator = Generator(bindings, cache if cache is not None else GenerationCache(None, "off"))
    method = CascadeMethod("test", stages, {"small": "small", "large": "large"}, InlineMath(None),
                           generator, seed=seed, threshold_op=threshold_op)
    return method, backend


def solve(method, problem=PROBLEM):
    return asyncio.run(method.solve(problem))
