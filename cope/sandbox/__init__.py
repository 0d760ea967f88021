"""A sandbox for model-written code: run a program against tests, or capture what it prints.

    >>> from cope.sandbox import run_tests
    >>> run_tests("def add(a, b):\\n    return a + b", ["assert add(2, 3) == 5"]).passed
    True

Every program runs in a process of its own under the isolation `isolation.py` chooses
(bubblewrap, or util-linux `unshare` with cope's own set-up in `_jail.py`: private PID and
network namespaces, a read-only file system with a fresh capped tmpfs as working
directory, never as uid 0; `auto` refuses to run programs where neither works, and only an
explicit `sandbox.isolation=process` runs them unprotected), under a wall-clock timeout and
setrlimit limits on CPU time, memory, file size, open files and processes, with an
environment scrubbed down to PATH and locale, and with stdout and stderr capped. Every
result names the layers that protected it.

Why a verdict cannot be forged. Exit status and printed text prove nothing: a program can
call `exit(0)` before its asserts or print "passed". So the parent trusts one thing only: a
line `<nonce> <json verdict>` on a pipe of its own. The nonce is 128 random bits drawn per
run; it reaches the runner (`_runner.py`) in a memfd that the runner reads and closes before
the program's first line runs, and it then lives only in a local variable of the runner's
main function. The runner writes the verdict after the last test has run, then leaves with
`os._exit` (no atexit hook, no thread gets a later word). The program cannot reach the
nonce: the runner marks itself non-dumpable, so its memory files belong to root, and the
program never runs as root, so the kernel refuses it /proc/self/mem by any path (and a
child process is refused its parent's). The runner's audit hook (which cannot be removed,
and whose closure holds everything it relies on) adds a second wall: it turns away frame
introspection (`sys._getframe`, traceback and generator frames, trace and profile hooks),
the garbage collector's object lists, ctypes, and opening or linking to a file named `mem`
or `pagemap` by any absolute, relative or dir_fd path. Anything else on the pipe (a second
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


def configure(isolation: str = "auto") -> Sandbox:
    """Make the sandbox that every task uses run under `isolation` (auto, bwrap, unshare or
    process); a ConfigError, naming what to install, when this machine cannot honour it."""
    global _default
    if _default is None or _default.choice != isolation:
        _default = Sandbox(isolation=isolation)
    return _default


def default_sandbox() -> Sandbox:
    return _default or configure()


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
           "configure", "default_sandbox", "detect", "run_program", "run_tests", "run_tests_batch"]
