"""Agent tasks: interactive text games, one episode per problem (TextWorld, ALFWorld).

At every step the method's stages decide the next command together (COPE's agent setting):
a planner states what the next move should achieve, executors propose commands, and the
stage's confidence is the vote share of the top command among its n proposals. A proposal
that is not one of the game's valid commands abstains. An episode is correct when the game
is won within `task.agent.max_steps` actions.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

# a module reference: its names (vote) are this task's methods too
from cope.agent import actions
from cope.agent.alfworld import ALFWorldGames
from cope.agent.env import GameEnv, GameState, TextWorldEnv
from cope.agent.episode import EpisodeSolver
from cope.agent.games import GameSettings, game_metadata, generate_games, list_games
from cope.errors import DataError
from cope.paths import cope_home
from cope.samples import Message
from cope.tasks.base import Plan, Problem, Task, Vote, render_plans

GOAL_PLANNER = (
    "You are coaching a player of a text adventure game. In one sentence, state the goal of "
    "the player's next move: what it should achieve toward the task."
)
GUIDELINE_PLANNER = (
    "You are a skilled player of text adventure games, coaching another player. Explain how "
    "to make progress from here toward the task, focusing on strategy and key ideas, in one "
    "or two sentences. Return only the guidelines as plain text."
)
EXECUTOR = (
    "You are playing a text adventure game. Choose the next command, the one that makes the "
    "most progress toward the task. Copy it exactly from the list of valid commands and end "
    "your response with a line of the form: Action: <command>"
)
ANSWER_FORMAT = "Reply with the next command on one line: Action: <a valid command>"
WON = "won"


class AgentTask(Task):
    """A family of games; subclasses say where games come from and how one is opened."""

    family = "agent"

    def open_env(self, problem: Problem) -> GameEnv:
        raise NotImplementedError

    def step_problem(self, problem: Problem, state: GameState, history: list[tuple[str, str]],
                     step: int, max_steps: int) -> Problem:
        """The situation at one step, as a problem the stage engine can solve: its question
        is what the models read, its meta the valid commands."""
        keep = int(self.cfg.agent.history)
        shown = history[-keep:] if keep else []
        parts = [f"Task: {state.objective or problem.question}".strip()]
        if shown:
            past = "\n\n".join(f"> {command}\n{feedback}" for command, feedback in shown)
            parts.append(f"Your last {len(shown)} of {len(history)} moves and what followed:\n"
                         f"{past}")
        parts.append(f"Now (move {step + 1} of at most {max_steps}):\n{state.observation}")
        if state.admissible is not None:
            parts.append("Valid commands: " + "; ".join(state.admissible))
        return Problem(id=f"{problem.id}/step-{step}", question="\n\n".join(parts), gold="",
                       index=problem.index, meta={"admissible": state.admissible, "step": step})

    def plan_messages(self, problem: Problem, kind: str) -> tuple[Message, ...]:
        instruction = GOAL_PLANNER if kind == "goal" else GUIDELINE_PLANNER
        return (("system", instruction), ("user", problem.question))

    def execute_messages(self, problem: Problem, plans: list[Plan]) -> tuple[Message, ...]:
        user = problem.question
        if plans:
            lines = render_plans(plans)
            user += f"\n\nA plan to follow:\n{lines}"
        # last, so that a model continuing the plan's wording still answers in the format
        user += f"\n\n{ANSWER_FORMAT}"
        return (("system", EXECUTOR), ("user", user))

    def extract(self, problem: Problem, text: str) -> str | None:
        return actions.choose_command(text, problem.meta.get("admissible"))

    def vote(self, problem: Problem, answers: list[str | None],
             rng: random.Random | None = None) -> Vote:
        return actions.vote(answers, rng)

    def is_correct(self, problem: Problem, answer: str | None) -> bool:
        return answer == WON

    def solver(self, method):
        return EpisodeSolver(method, self, int(self.cfg.agent.max_steps))

    def metrics(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(rows)
        by_stage: dict[str, int] = {}
        for row in rows:
            for stage, count in row["steps_resolved_by_stage"].items():
                by_stage[stage] = by_stage.get(stage, 0) + count
        won = [row for row in rows if row["won"]]
        mean = (lambda values: sum(values) / len(values) if values else 0.0)
        return {
            "success_rate": len(won) / n if n else 0.0,
            "mean_steps": mean([row["steps"] for row in rows]),
            "mean_steps_won": mean([row["steps"] for row in won]),
            "mean_invalid_moves": mean([row["invalid_moves"] for row in rows]),
            "n_steps": sum(row["steps"] for row in rows),
            "steps_resolved_by_stage": by_stage,
            "max_steps": int(self.cfg.agent.max_steps),
        }


class TextWorldTask(AgentTask):
    """Games generated offline with TextWorld's compiler (Côté et al. 2018), or any compiled
    TextWorld games in a directory (task.source)."""

    name = "textworld"

    def _game_files(self) -> list[Path]:
        agent = self.cfg.agent
        settings = GameSettings(int(agent.world_size), int(agent.nb_objects),
                                int(agent.quest_length))
        seeds = [int(agent.game_seed) + i for i in range(int(agent.games))]
        if self.cfg.source is None:
            return generate_games(cope_home() / "games" / settings.name, settings, seeds)
        directory = Path(self.cfg.source).expanduser()
        if directory.is_file():
            raise DataError(f"task.source={self.cfg.source}: give a directory of TextWorld games "
                            "(.z8 or .ulx files), not a file.")
        games = list_games(directory) if directory.is_dir() else []
        # an empty or new directory receives the generated games
        return games or generate_games(directory, settings, seeds)

    def load(self) -> list[Problem]:
        problems = []
        for path in self._game_files():
            meta = game_metadata(path)
            problems.append(Problem(id=path.stem, question=meta.get("objective", ""), gold=WON,
                                    index=len(problems),
                                    meta={"path": str(path),
                                          "walkthrough": meta.get("walkthrough", [])}))
        return problems

    def open_env(self, problem: Problem) -> GameEnv:
        return TextWorldEnv(problem.meta["path"])


class ALFWorldTask(AgentTask):
    """ALFWorld (Shridhar et al. 2021), text version: household tasks in TextWorld. The
    paper's 134 evaluation games are the out-of-distribution split (task.split)."""

    name = "alfworld"

    def _env_factory(self):

        return ALFWorldGames(self.cfg.agent.alfworld_config, self.cfg.split,
                             int(self.cfg.agent.max_steps))

    def load(self) -> list[Problem]:
        self._games = self._env_factory()
        return [Problem(id=game_id, question="", gold=WON, index=i, meta={"gamefile": path})
                for i, (game_id, path) in enumerate(self._games.game_files())]

    def open_env(self, problem: Problem) -> GameEnv:
        if not hasattr(self, "_games"):
            self._games = self._env_factory()
        return self._games.open(problem.meta["gamefile"])
