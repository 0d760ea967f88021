"""Helpers to drive the stage engine with a scripted backend (no model involved)."""

from __future__ import annotations

import asyncio

from cope.backends.scripted import ScriptedBackend
from cope.cache import GenerationCache
from cope.engine import CascadeMethod, Stage
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
    return [Stage.from_config(name, cfg.method.stages[name]) for name in names]


def build(stages, responder, threshold_op="gt", seed=0, cache=None):
    backend = ScriptedBackend(responder)
    bindings = {alias: ModelBinding(alias, alias, backend) for alias in ("small", "large")}
    generator = Generator(bindings, cache if cache is not None else GenerationCache(None, "off"))
    method = CascadeMethod("test", stages, {"small": "small", "large": "large"}, InlineMath(None),
                           generator, seed=seed, threshold_op=threshold_op)
    return method, backend


def solve(method, problem=PROBLEM):
    return asyncio.run(method.solve(problem))


# --- agent tasks: a scripted player that follows a game's walkthrough (or does not) ---

WALKTHROUGH, GARBAGE = "walkthrough", "garbage"


def walkthrough_responder(problems, small=WALKTHROUGH, small_with_guideline=WALKTHROUGH,
                          large=WALKTHROUGH):
    """Answers agent prompts. Planners write a labelled plan; an executor proposes the
    walkthrough's command for its move ('walkthrough'), a malformed or invalid command
    ('garbage'), or, given a list, the policy of sample i. Games are told apart by their
    objective, which every prompt shows; the move number comes from 'move k of'."""
    from cope.tasks.agent import EXECUTOR as AGENT_EXECUTOR
    from cope.tasks.agent import GOAL_PLANNER as AGENT_GOAL
    from cope.tasks.agent import GUIDELINE_PLANNER as AGENT_GUIDELINE

    import re

    games = [(p.question, p.meta["walkthrough"]) for p in problems]
    garbage = ["I would rather dance!", "", "Action: fly to the moon", "Action:"]

    def respond(request):
        system, user = request.messages[0][1], request.messages[-1][1]
        i = request.sample_index
        if system in (AGENT_GOAL, AGENT_GUIDELINE):
            return f"plan by {request.model_identity} #{i}"
        assert system == AGENT_EXECUTOR
        if "1.5b" in request.model_identity:
            policy = large
        else:
            policy = small_with_guideline if "Guideline:" in user else small
        if isinstance(policy, list):
            policy = policy[i]
        if policy == GARBAGE:
            return garbage[i % len(garbage)]
        walkthrough = next(w for objective, w in games if objective.strip() in user)
        move = int(re.search(r"move (\d+) of at most", user).group(1))
        command = walkthrough[move - 1] if move <= len(walkthrough) else "look"
        # spelt loosely on purpose: case, markdown and a full stop are normalised away
        return f"The next step is clear.\nAction: `{command.capitalize()}`."

    return respond
