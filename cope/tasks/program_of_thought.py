"""Program-of-thought answers: find the program in a response, run it, read what it printed.

A program-of-thought sample (Chen et al. 2022; the PoT half of Yue et al.'s MoT cascade) is
Python written by the model that prints its answer. Every program runs through
`run_program`, in a fresh interpreter in its own process group with a timeout; a program
that crashes, times out or prints nothing gives no answer (the sample abstains).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(?P<code>.*?)```", re.DOTALL | re.IGNORECASE)
_OUTPUT_LIMIT = 64 * 1024  # stdout kept from a program; an answer is one short line


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
    """Run `code` in a fresh, isolated Python interpreter and return what it printed.

    Raises ProgramError when the program exits with an error, runs past `timeout` seconds
    (its whole process group is killed), or prints nothing.
    """
    with tempfile.TemporaryDirectory(prefix="cope-pot-") as workdir:
        path = os.path.join(workdir, "program.py")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(code)
        # -I: ignore PYTHON* variables and the user's site-packages; the working directory is
        # a scratch directory that is removed afterwards
        process = subprocess.Popen(
            [sys.executable, "-I", path], cwd=workdir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"},
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ProgramError(f"timed out after {timeout:g} s") from None
        finally:
            # children the program started must not outlive it
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    output = stdout[:_OUTPUT_LIMIT].decode("utf-8", errors="replace")
    if process.returncode != 0:
        last = stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        raise ProgramError(f"exit status {process.returncode}: {last[0][:200]}")
    if not output.strip():
        raise ProgramError("printed nothing")
    return output


def printed_answer(output: str) -> str:
    """The answer a program printed: its last non-empty line."""
    return [line for line in output.splitlines() if line.strip()][-1].strip()
