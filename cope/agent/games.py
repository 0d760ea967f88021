"""Offline TextWorld games, generated with TextWorld's own compiler (`tw-make custom`).

A game is fixed by its settings and seed: tw-make builds the same file from the same
options, so tests and machines without a network share games by regenerating them. Games
are written once into a cache directory and reused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cope.agent.env import TEXTWORLD_INSTALL
from cope.errors import DataError

log = logging.getLogger(__name__)

GAME_SUFFIXES = (".z8", ".ulx")


@dataclass(frozen=True)
class GameSettings:
    world_size: int = 2  # rooms
    nb_objects: int = 4
    quest_length: int = 2  # actions the quest needs

    @property
    def name(self) -> str:
        return f"textworld-w{self.world_size}-o{self.nb_objects}-q{self.quest_length}"


def tw_make() -> str:
    """The tw-make script of the installed textworld (on PATH, or beside this Python)."""
    beside = Path(sys.executable).parent / "tw-make"
    found = shutil.which("tw-make") or (str(beside) if beside.is_file() else None)
    if found is None:
        raise DataError(f"Generating TextWorld games needs textworld's tw-make: {TEXTWORLD_INSTALL}.")
    return found


def generate_game(directory: Path, settings: GameSettings, seed: int) -> Path:
    """Game `seed` of these settings in `directory` (generated when absent). The files appear
    under their final names only when complete, so concurrent runs never read half a game."""
    target = directory / f"game-s{seed}.z8"
    if target.is_file() and target.with_suffix(".json").is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".tw-make-") as scratch:
        output = Path(scratch) / target.name
        command = [tw_make(), "custom", "--world-size", str(settings.world_size),
                   "--nb-objects", str(settings.nb_objects),
                   "--quest-length", str(settings.quest_length),
                   "--seed", str(seed), "--output", str(output), "--format", "z8",
                   "--silent", "-f"]
        log.info("Generating TextWorld game: %s", " ".join(command))
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not output.is_file():
            raise DataError(f"tw-make failed for game seed {seed} (exit {done.returncode}): "
                            f"{(done.stderr or done.stdout).strip()[-500:]}")
        # metadata first: a game file without its metadata is never taken as complete
        os.replace(output.with_suffix(".json"), target.with_suffix(".json"))
        os.replace(output, target)
    return target


def generate_games(directory: Path, settings: GameSettings, seeds: list[int]) -> list[Path]:
    return [generate_game(directory, settings, seed) for seed in seeds]


def list_games(directory: Path) -> list[Path]:
    """The compiled games of a directory, in name order."""
    return sorted(p for p in directory.iterdir() if p.suffix in GAME_SUFFIXES and p.is_file())


def game_metadata(path: Path) -> dict:
    """Objective and walkthrough from the game's .json beside it (empty if there is none)."""
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        return {}
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc.msg}).") from None
    return {"objective": data.get("objective", ""),
            "walkthrough": list((data.get("metadata") or {}).get("walkthrough") or [])}
