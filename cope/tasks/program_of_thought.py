"""Program-of-thought answers: find the program in a response, run it, read what it printed.

A program-of-thought sample (Chen et al. 2022; the PoT half of Yue et al.'s MoT cascade) is
Python written by the model that prints its answer. Every program runs through
`run_program`, in the sandbox that holds the code tasks' candidates; a program that
crashes, times out or prints nothing gives no answer (the sample abstains).
"""

from __future__ import annotations

import re

from cope import sandbox

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(?P<code>.*?)```", re.DOTALL | re.IGNORECASE)


class ProgramError(Exception):
    """A program that did not finish cleanly: a crash, a timeout or no output at all."""


def extract_program(text: str) -> str | None:
    """The last fenced Python block of a response; a response without fences is taken as the
    program itself when it parses. None when there is no program."""
    blocks = [m.group("code") for m in _FENCE.finditer(text or "")]
    if blocks:
        return blocks[-1].strip() or None
    candidate = (text or "").strip()
    if not candidate:
        return None
    try:
        compile(candidate, "<response>", "exec")
    except (SyntaxError, ValueError):
        return None
    return candidate


def run_program(code: str, timeout: float) -> str:
    """Run `code` in the sandbox (cope.sandbox: no network, its own scratch directory, an
    unprivileged uid, CPU, memory and process limits) and return what it printed.

    Raises ProgramError when the program exits with an error, runs past `timeout` seconds,
    or prints nothing.
    """
    result = sandbox.run_program(code, timeout)
    if not result.ok:
        raise ProgramError(result.reason or "failed")
    if not result.stdout.strip():
        raise ProgramError("printed nothing")
    return result.stdout


def printed_answer(output: str) -> str:
    """The answer a program printed: its last non-empty line."""
    return [line for line in output.splitlines() if line.strip()][-1].strip()
