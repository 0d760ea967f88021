"""A sandbox for model-written code: run a program against tests, or capture what it prints.

    >>> from cope.sandbox import run_tests
    >>> run_tests("def add(a, b):\\n    return a + b", ["assert add(2, 3) == 5"]).passed
    True

Every program runs in a process of its own (`isolation.py` says which layers this machine
offers: bubblewrap namespaces with a read-only root, no network, a fresh capped tmpfs and an
unprivileged uid; without bubblewrap, a plain child process), under a wall-clock timeout
and setrlimit limits on CPU time, memory, file size, open files and processes, with an
environment scrubbed down to PATH and locale, and with stdout and stderr capped.

Why a verdict cannot be forged. Exit status and printed text prove nothing: a program can
call `exit(0)` before its asserts or print "passed". So the parent trusts one thing only: a
line `<nonce> <json verdict>` on a pipe of its own. The nonce is 128 random bits drawn per
run; it reaches the runner (`_runner.py`) in a memfd that the runner reads and closes before
the program's first line runs, and it then lives only in a local variable of the runner's
main function. The runner writes the verdict after the last test has run, then leaves with
`os._exit` (no atexit hook, no thread gets a later word). The program cannot reach the
nonce: the runner's audit hook (which cannot be removed, and whose closure holds everything
it relies on) turns away frame introspection (`sys._getframe`, traceback and generator
frames, trace and profile hooks), the garbage collector's object lists, ctypes and
/proc/<pid>/mem, and the runner marks itself non-dumpable so that its memory files belong
to root. Anything else on the pipe (a second
line, a wrong nonce, a verdict written by the program itself) makes the run a failure. The
runner binds `exec`, `compile` and the other names it relies on before the program runs, and
each test runs with a fresh copy of the builtins as they were before the program, so
patching `builtins` or `AssertionError` changes nothing the tests see (the program's own
functions keep the builtins they were defined with). A program that redefines a builtin
name at its top level (`set = ...`) does change what the tests see: the tests run in the
program's namespace, as MBPP's and HumanEval's own harnesses run them. Likewise a value
whose `__eq__` says yes to everything passes an `assert f(x) == y`, as it would there.
"""

from __future__ import annotations

from cope.sandbox.execute import Limits, ProgramResult, Sandbox, TestJob, TestResult
from cope.sandbox.isolation import Isolation, detect

_default: Sandbox | None = None


def default_sandbox() -> Sandbox:
    global _default
    if _default is None:
        _default = Sandbox()
    return _default


def run_tests(program: str, tests: list[str], timeout: float = 10.0, setup: str = ""
              ) -> TestResult:
    """Whether `program` passes every test; `reason` says why not."""
    return default_sandbox().run_tests(program, tests, timeout, setup)


def run_tests_batch(jobs: list[TestJob], timeout: float = 10.0) -> list[TestResult]:
    """Many programs with their tests, in parallel workers; results in order."""
    return default_sandbox().run_tests_batch(jobs, timeout)


def run_program(program: str, timeout: float = 10.0) -> ProgramResult:
    """Run `program` and capture its stdout (for program-of-thought answers)."""
    return default_sandbox().run_program(program, timeout)


__all__ = ["Isolation", "Limits", "ProgramResult", "Sandbox", "TestJob", "TestResult",
           "default_sandbox", "detect", "run_program", "run_tests", "run_tests_batch"]
