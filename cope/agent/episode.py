"""The episode loop: at every step the method's stages choose the next action together.

Each step is one run of the stage cascade over the current situation (task, recent history,
observation, valid commands): the stage's planner writes a plan for the next action, its
executor proposes n commands, and the stage acts when the vote share of the top command
passes its threshold; otherwise the step escalates to the next stage, exactly as a math
problem does. A step whose final stage proposes no valid command is an invalid move: the
game is not touched, the step counts, and the models see that it failed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from cope.agent.env import GameEnv, GameState
from cope.engine import CascadeMethod, ProblemResult
from cope.generator import RetaggingGenerator
from cope.tasks.base import Problem

INVALID_COMMAND = "(no valid command)"
INVALID_FEEDBACK = "That was not a valid command: choose one of the valid commands."


class EpisodeTask(Protocol):
    """What the loop needs of an agent task (cope.tasks.agent.AgentTask)."""

    def open_env(self, problem: Problem) -> GameEnv: ...

    def step_problem(self, problem: Problem, state: GameState, history: list[tuple[str, str]],
                     step: int, max_steps: int) -> Problem: ...


class EpisodeSolver:
    """Plays one game per problem with a cascade method; the result reads like a problem's."""

    def __init__(self, method: CascadeMethod, task: EpisodeTask, max_steps: int) -> None:
        self.method = method
        self.task = task
        self.max_steps = max_steps

    def _step_method(self, episode_id: str, step: int) -> CascadeMethod:
        return self.method.with_generator(
            RetaggingGenerator(self.method.generator, episode_id, step=step))

    async def solve(self, problem: Problem) -> ProblemResult:
        generations: list = []
        trajectory: list[dict[str, Any]] = []
        history: list[tuple[str, str]] = []  # (command, what followed)
        resolved: Counter[str] = Counter()
        invalid = 0
        env = self.task.open_env(problem)
        try:
            state = env.reset()
            for step in range(self.max_steps):
                if state.done:
                    break
                situation = self.task.step_problem(problem, state, history, step, self.max_steps)
                result = await self._step_method(problem.id, step).solve(situation)
                generations.extend(result.generations)
                resolved[result.resolved_stage] += 1
                command = result.answer
                if command is None:
                    invalid += 1
                    history.append((INVALID_COMMAND, INVALID_FEEDBACK))
                else:
                    state = env.step(command)
                    history.append((command, state.observation))
                trajectory.append({
                    "step": step, "command": command, "valid": command is not None,
                    "resolved_stage": result.resolved_stage,
                    "stages": [stage.to_json() for stage in result.stages],
                    "observation": history[-1][1], "score": state.score,
                })
        finally:
            env.close()
        outcome = "won" if state.won else ("lost" if state.done else "step_limit")
        order = [stage.name for stage in self.method.stages]
        deepest = max(resolved, key=order.index) if resolved else order[0]
        extra = {
            "won": state.won, "outcome": outcome, "steps": len(trajectory),
            "invalid_moves": invalid, "score": state.score,
            "steps_resolved_by_stage": {name: resolved.get(name, 0) for name in order},
            "trajectory": trajectory,
        }
        # an episode "resolves" at the deepest stage any of its steps needed
        return ProblemResult(problem, outcome, deepest, [], generations, extra=extra)
