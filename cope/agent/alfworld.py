"""ALFWorld's text games through alfworld's own environment (AlfredTWEnv).

Needs the `alfworld` package and its data (`alfworld-download`, which fills ALFWORLD_DATA).
Games are found the way alfworld finds them (solvable games of the chosen split, at most
num_eval_games); each episode registers its one game with alfworld's batch environment
(batch size 1), whose observations, admissible commands and `won` flag are read back.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import yaml

from cope.agent.env import GameState
from cope.errors import DataError

SPLITS = {"test": "eval_out_of_distribution", "valid_unseen": "eval_out_of_distribution",
          "eval_out_of_distribution": "eval_out_of_distribution",
          "valid_seen": "eval_in_distribution", "eval_in_distribution": "eval_in_distribution",
          "train": "train"}
HOW = ("ALFWorld needs the alfworld package and its data: pip install alfworld, then "
       "alfworld-download (or copy the data) and set ALFWORLD_DATA to that directory. "
       "For games that need neither, use task=textworld.")


def default_config(max_steps: int) -> dict[str, Any]:
    """The settings AlfredTWEnv reads, as in alfworld's configs/base_config.yaml."""
    return {
        "dataset": {"data_path": "$ALFWORLD_DATA/json_2.1.1/train",
                    "eval_id_data_path": "$ALFWORLD_DATA/json_2.1.1/valid_seen",
                    "eval_ood_data_path": "$ALFWORLD_DATA/json_2.1.1/valid_unseen",
                    "num_train_games": -1, "num_eval_games": -1},
        "logic": {"domain": "$ALFWORLD_DATA/logic/alfred.pddl",
                  "grammar": "$ALFWORLD_DATA/logic/alfred.twl2"},
        "env": {"type": "AlfredTWEnv", "regen_game_files": False, "domain_randomization": False,
                "task_types": [1, 2, 3, 4, 5, 6], "expert_timeout_steps": 150,
                "expert_type": "handcoded", "goal_desc_human_anns_prob": 0.0},
        "general": {"random_seed": 42, "training_method": "dagger"},
        "dagger": {"training": {"max_nb_steps_per_episode": max_steps}},
        "rl": {"training": {"max_nb_steps_per_episode": max_steps}},
    }


def check_available() -> Path:
    """ALFWORLD_DATA, once alfworld is importable and the data is there; else a DataError
    that names both ways to get them."""
    if importlib.util.find_spec("alfworld") is None:
        raise DataError(f"The alfworld package is not installed. {HOW}")
    data = os.environ.get("ALFWORLD_DATA")
    if not data:
        raise DataError(f"ALFWORLD_DATA is not set. {HOW}")
    if not (Path(data) / "json_2.1.1").is_dir():
        raise DataError(f"ALFWORLD_DATA={data} has no json_2.1.1 directory. {HOW}")
    return Path(data)


class ALFWorldGames:
    """The games of one ALFWorld split and a way to play each."""

    def __init__(self, config_path: str | None, split: str, max_steps: int) -> None:
        self.data = check_available()
        if split not in SPLITS:
            raise DataError(f"task.split={split}: ALFWorld splits are {', '.join(SPLITS)}.")
        config = default_config(max_steps)
        if config_path:
            with open(Path(config_path).expanduser(), encoding="utf-8") as handle:
                config.update(yaml.safe_load(handle) or {})
        from alfworld.agents.environment import get_environment

        self._alfred = get_environment(config["env"]["type"])(config, train_eval=SPLITS[split])

    def game_files(self) -> list[tuple[str, str]]:
        """(id, game file) pairs; the id is the game's directory relative to the data."""
        pairs = []
        for path in self._alfred.game_files:
            parent = Path(path).parent
            try:
                game_id = str(parent.relative_to(self.data / "json_2.1.1"))
            except ValueError:
                game_id = str(parent)
            pairs.append((game_id, str(path)))
        return pairs

    def open(self, game_file: str) -> "ALFWorldEnv":
        self._alfred.game_files = [game_file]
        self._alfred.num_games = 1
        return ALFWorldEnv(self._alfred.init_env(batch_size=1))


class ALFWorldEnv:
    """alfworld's batch environment with one game: lists in, first elements out."""

    def __init__(self, env) -> None:
        self._env = env
        self._objective = ""

    def _state(self, observation: str, infos: dict, done: bool) -> GameState:
        admissible = infos["admissible_commands"][0]
        return GameState(observation=observation.strip(),
                         admissible=None if admissible is None else list(admissible),
                         done=bool(done or infos["won"][0]), won=bool(infos["won"][0]),
                         objective=self._objective)

    def reset(self) -> GameState:
        observations, infos = self._env.reset()
        text = observations[0]
        # the first observation ends with "Your task is to: ..."
        marker = text.find("Your task is to:")
        self._objective = text[marker:].strip() if marker >= 0 else ""
        return self._state(text, infos, False)

    def step(self, command: str) -> GameState:
        observations, _scores, dones, infos = self._env.step([command])
        return self._state(observations[0], infos, dones[0])

    def close(self) -> None:
        self._env.close()
