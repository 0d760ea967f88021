"""Game environments as the episode loop sees them: reset, step, close.

One small contract covers TextWorld games and ALFWorld's: a state carries what the player
reads, the commands the game accepts (when it says), and whether the game is over and won.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cope.errors import DataError

TEXTWORLD_INSTALL = 'pip install -e ".[agent]"  (or: pip install textworld)'


@dataclass(frozen=True)
class GameState:
    observation: str
    admissible: list[str] | None = None  # None: the game does not list its valid commands
    done: bool = False
    won: bool = False
    score: float = 0.0
    objective: str = ""
    extra: dict = field(default_factory=dict, compare=False)


class GameEnv(Protocol):
    def reset(self) -> GameState: ...

    def step(self, command: str) -> GameState: ...

    def close(self) -> None: ...


_PROMPT_TAIL = re.compile(r">\s*$")


def clean_feedback(text: str) -> str:
    """The game's text without its title banner (lines of ASCII art), the status line and the
    trailing '>' prompt, with runs of blank lines collapsed."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        letters = sum(c.isalpha() for c in stripped)
        if stripped and letters < len(stripped.replace(" ", "")) / 2:
            continue  # banner art such as '| $$  | $$' or a lone '>'
        lines.append(line.rstrip())
    cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return _PROMPT_TAIL.sub("", cleaned).strip()


def import_textworld():
    try:
        import textworld
    except ImportError:
        raise DataError(f"TextWorld games need the 'textworld' package: {TEXTWORLD_INSTALL}."
                        ) from None
    return textworld


class TextWorldEnv:
    """A compiled TextWorld game (.z8 or .ulx) played through textworld.start."""

    def __init__(self, path: str | Path) -> None:
        textworld = import_textworld()
        infos = textworld.EnvInfos(admissible_commands=True, won=True, lost=True,
                                   objective=True, score=True, max_score=True)
        self._env = self._quiet(textworld.start, str(path), infos)

    @staticmethod
    def _quiet(call, *args):
        # jericho warns that it cannot track score in TextWorld's games; TextWorld does
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is not fully supported")
            return call(*args)

    def _state(self, game_state, done: bool = False) -> GameState:
        admissible = game_state["admissible_commands"]
        return GameState(
            observation=clean_feedback(game_state.feedback or ""),
            admissible=None if admissible is None else sorted(admissible),
            done=bool(done or game_state["won"] or game_state["lost"]),
            won=bool(game_state["won"]),
            score=float(game_state["score"] or 0),
            objective=game_state["objective"] or "",
            extra={"max_score": game_state["max_score"]},
        )

    def reset(self) -> GameState:
        return self._state(self._quiet(self._env.reset))

    def step(self, command: str) -> GameState:
        game_state, _score, done = self._quiet(self._env.step, command)
        return self._state(game_state, done)

    def close(self) -> None:
        self._env.close()
