"""Runs inside the sandbox: one program, then its tests, then one verdict.

Started as `python -I -B _runner.py SETUP_FD VERDICT_FD` (standard library only: it must run
with any interpreter the sandbox offers). SETUP_FD holds a JSON object (mode, program, setup,
tests, nonce, limits); it is read and closed before any model-written code runs. The verdict
goes to VERDICT_FD as one line, `<nonce> <json>`, and only after every test ran; the parent
accepts nothing else on that pipe. See cope/sandbox/__init__.py for why it cannot be forged.
"""

import builtins
import json
import os
import resource
import sys

# Frame and object introspection would reach the nonce in main()'s locals; ctypes and
# /proc/<pid>/mem would reach it in memory. Blocked with ValueError, which the standard
# library's own optional uses of frames (namedtuple, typing, enum, logging) fall back on.
_BLOCKED_EVENTS = frozenset({
    "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace",
    "sys.setprofile", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata",
    "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at", "ctypes.PyObj_FromPtr",
    "sys.addaudithook",
})
_FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})


def _audit(event, args):
    if event in _BLOCKED_EVENTS:
        raise ValueError(f"sandbox: {event} is disabled")
    if event == "object.__getattr__" and len(args) > 1 and args[1] in _FRAME_ATTRIBUTES:
        raise ValueError(f"sandbox: {args[1]} is disabled")
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        path = os.fsdecode(args[0])
        if path.startswith("/proc/") and path.endswith(("/mem", "/pagemap")):
            raise ValueError(f"sandbox: opening {path} is disabled")


def _limit(name, value):
    kind = getattr(resource, name)
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass  # a limit already lower than ours stays


def _describe(exc):
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main():
    setup_fd, verdict_fd = int(sys.argv[1]), int(sys.argv[2])
    with os.fdopen(setup_fd, "rb") as handle:
        job = json.loads(handle.read())
    nonce = job.pop("nonce")
    limits = job["limits"]
    _limit("RLIMIT_CPU", limits["cpu_s"])
    _limit("RLIMIT_AS", limits["memory_bytes"])
    _limit("RLIMIT_FSIZE", limits["file_bytes"])
    _limit("RLIMIT_NOFILE", limits["open_files"])
    _limit("RLIMIT_CORE", 0)
    _limit("RLIMIT_NPROC", limits["processes"])
    pristine = dict(builtins.__dict__)
    # The names the verdict depends on, bound before the program could patch them.
    _exec, _compile, _dict, _enumerate, _BaseException = exec, compile, dict, enumerate, BaseException
    write = os.write
    dumps = json.dumps
    exit_now = os._exit
    sys.addaudithook(_audit)

    def report(verdict):
        sys.stdout.flush()
        sys.stderr.flush()
        write(verdict_fd, (nonce + " " + dumps(verdict) + "\n").encode())
        exit_now(0)  # no atexit hooks, no lingering threads: the verdict is the last word

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        if job["setup"]:
            exec(compile(job["setup"], "<setup>", "exec"), namespace)
        code = compile(job["program"], "program.py", "exec")
        exec(code, namespace)
    except SyntaxError as exc:
        report({"stage": "program", "passed": 0, "error": _describe(exc)})
    except BaseException as exc:  # SystemExit too: a program that exits has not passed
        report({"stage": "program", "passed": 0, "error": _describe(exc)})
    if job["mode"] == "program":
        report({"stage": "done", "passed": 0, "error": None})
    # Tests see the builtins as they were before the program ran; the program's own
    # functions keep theirs (a function looks builtins up where it was defined).
    passed = 0
    for index, test in _enumerate(job["tests"]):
        namespace["__builtins__"] = _dict(pristine)
        try:
            _exec(_compile(test, f"<test {index}>", "exec"), namespace)
        except _BaseException as exc:
            report({"stage": "test", "passed": passed, "failed": index, "error": _describe(exc)})
        passed += 1
    report({"stage": "done", "passed": passed, "error": None})


if __name__ == "__main__":
    main()
