"""Actions from model text: reading the proposed command, normalising it, and the vote.

A stage's executions each propose one command; the stage's confidence is the share of its
n executions that propose the top command. A proposal that names no command, or a command
outside the game's admissible list (when the game provides one), abstains: it counts in n
but votes for nothing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from cope.tasks.base import Vote

_ACTION_LINE = re.compile(r"^[^\w\n]*action[^\w\n]*[:=-][ \t]*(?P<command>.*)$",
                          re.IGNORECASE | re.MULTILINE)
_WRAPPERS = "`*\"'<>[]()"


def normalise(command: str) -> str:
    """Lower case, single spaces, no quotes, markdown or closing punctuation: 'Go  North.'
    and '`go north`' are the same command."""
    text = command.strip().lstrip(">").strip()
    text = text.strip(_WRAPPERS).strip().rstrip(".!;:,").strip(_WRAPPERS)
    return re.sub(r"\s+", " ", text).lower()


def read_command(text: str) -> str | None:
    """The command a response proposes: the last 'Action: ...' line, else its first non-empty
    line. None for an empty response."""
    matches = list(_ACTION_LINE.finditer(text or ""))
    if matches:
        raw = matches[-1].group("command")
    else:
        raw = next((line for line in (text or "").splitlines() if line.strip()), "")
    command = normalise(raw)
    return command or None


def choose_command(text: str, admissible: Sequence[str] | None) -> str | None:
    """The proposed command as the game spells it, or None (an invalid proposal, which
    abstains): with an admissible list, only its commands are valid."""
    command = read_command(text)
    if command is None or admissible is None:
        return command
    by_normal = {normalise(option): option for option in admissible}
    return by_normal.get(command)


def vote(commands: list[str | None], rng: random.Random | None = None) -> Vote:
    """Majority vote over proposed commands; confidence = votes of the top command / n
    (abstentions included). Ties break at random with `rng`, else the first seen wins."""
    groups: dict[str, list[int]] = {}
    for i, command in enumerate(commands):
        if command is not None:
            groups.setdefault(command, []).append(i)
    if not groups:
        return Vote(answer=None, confidence=0.0, support=[], answers=list(commands))
    top = max(len(members) for members in groups.values())
    tied = [command for command, members in groups.items() if len(members) == top]
    best = rng.choice(tied) if rng is not None and len(tied) > 1 else tied[0]
    return Vote(answer=best, confidence=top / len(commands), support=groups[best],
                   answers=list(commands), tied=len(tied))
