"""Runs inside the sandbox: one program, then its tests, then one verdict.

Started as `python -I -S -B _runner.py SETUP_FD VERDICT_FD` (standard library only: it must run
with any interpreter the sandbox offers). SETUP_FD holds a marshalled dict (mode, program, setup,
tests, nonce, limits; `setup` runs after the program, before the tests); it is read and
closed before any model-written code runs. The verdict goes to VERDICT_FD as one line,
`<nonce> <repr of a dict of literals>`, and only after every test ran; the parent
accepts nothing else on that pipe. See cope/sandbox/__init__.py for why it cannot be forged.
marshal and repr, not json: importing json (and re with it) costs more than most programs.
"""

import builtins
import marshal
import os
import resource
import sys

def _audit_hook():
    """An audit hook that turns away what would reach the nonce in main()'s locals: frame
    and object introspection, ctypes, /proc/<pid>/mem. It raises ValueError, which the
    standard library's optional uses of frames (namedtuple, typing, enum, logging) fall back
    on. Everything it uses is bound here, in its closure, so that patching builtins or this
    module's globals cannot switch it off; the hook itself is referenced from nowhere else."""
    blocked = frozenset({
        "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace",
        "sys.setprofile", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "sys.addaudithook", "sys.monitoring.register_callback",
    })
    # modules that read or write arbitrary memory: never imported by the program
    memory_modules = frozenset({"ctypes", "_ctypes", "_testcapi", "_testinternalcapi"})
    frame_attributes = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})
    # a process's memory files: matched by their last component, so that a relative path
    # (after chdir("/proc/self")), a dir_fd open (the event does not show the directory) and
    # a symbolic link made to reach them are turned away like the absolute path
    memory_files = frozenset({"mem", "pagemap"})
    _isinstance, _error, _str = isinstance, ValueError, str
    _startswith, _rpartition, _fsdecode, _fspath = str.startswith, str.rpartition, os.fsdecode, os.fspath

    def last_part(path):
        return _rpartition(_fsdecode(_fspath(path)), "/")[2]

    def hook(event, args):
        if event in blocked or _startswith(event, "ctypes."):
            raise _error("sandbox: " + event + " is disabled")
        if event == "import" and args and args[0] in memory_modules:
            raise _error("sandbox: importing " + args[0] + " is disabled")
        if event == "object.__getattr__" and args[1:2] and args[1] in frame_attributes:
            raise _error("sandbox: frame access is disabled")
        if event == "open" and args and args[0] is not None and not _isinstance(args[0], int):
            if last_part(args[0]) in memory_files:
                raise _error("sandbox: opening " + _str(args[0]) + " is disabled")
        if event == "os.symlink" and args and last_part(args[0]) in memory_files:
            raise _error("sandbox: a link to " + _str(args[0]) + " is disabled")

    return hook


def _undumpable():
    """PR_SET_DUMPABLE 0: /proc/self/mem and friends then belong to root, not to us (and
    the program never runs as root). Whether it held: without it the verdict is unsafe."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        return prctl(4, 0, 0, 0, 0) == 0 and prctl(3, 0, 0, 0, 0) == 0  # SET, then GET
    except Exception:
        return False
    finally:
        for name in [n for n in sys.modules if n == "ctypes" or n.startswith(("ctypes.", "_ctypes"))]:
            del sys.modules[name]


def _site_packages():
    """The interpreter's site-packages on sys.path, as without -S, but without running their
    .pth files: those import what they please (certificates, editable installs), which costs
    more than most programs take to run."""
    import site

    for path in site.getsitepackages():
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)


def _limit(name, value, hard=None):
    kind = getattr(resource, name)
    try:
        resource.setrlimit(kind, (value, value if hard is None else hard))
    except (ValueError, OSError):
        pass  # a limit already lower than ours stays


def main():
    setup_fd, verdict_fd = int(sys.argv[1]), int(sys.argv[2])
    with os.fdopen(setup_fd, "rb") as handle:
        job = marshal.loads(handle.read())
    nonce = job.pop("nonce")
    _site_packages()
    limits = job["limits"]
    _limit("RLIMIT_CPU", limits["cpu_s"], limits["cpu_s"] + 1)  # SIGXCPU first, then SIGKILL
    _limit("RLIMIT_AS", limits["memory_bytes"])
    _limit("RLIMIT_FSIZE", limits["file_bytes"])
    _limit("RLIMIT_NOFILE", limits["open_files"])
    _limit("RLIMIT_CORE", 0)
    _limit("RLIMIT_NPROC", limits["processes"])
    pristine = dict(builtins.__dict__)
    # The names the verdict depends on, bound before the program could patch them.
    _exec, _compile, _dict, _enumerate, _BaseException = exec, compile, dict, enumerate, BaseException
    write = os.write
    _repr, _str, _type, _max, _isinstance = repr, str, type, max, isinstance
    exit_now = os._exit

    def describe(exc):
        """An exception as exact str text: a str subclass could bring its own repr."""
        text = _str.__str__(_str(exc))
        if text.__len__() > 300:
            text = text[:300] + "..."
        name = _str.__str__(_type(exc).__name__)
        return name + ": " + text if text else name

    protected = _undumpable()
    sys.addaudithook(_audit_hook())

    def report(verdict):
        sys.stdout.flush()
        sys.stderr.flush()
        write(verdict_fd, (nonce + " " + _repr(verdict) + "\n").encode())
        exit_now(0)  # no atexit hooks, no lingering threads: the verdict is the last word

    if not protected:
        report({"stage": "harness", "passed": 0, "error": "the runner could not make its "
                "memory unreadable (prctl PR_SET_DUMPABLE), so no verdict would be safe"})
    # Against tests the program is a module named `solution`: its `if __name__ == "__main__":`
    # demo (which may wait for input) is not part of the answer.
    name = "__main__" if job["mode"] == "program" else "solution"
    namespace = {"__name__": name, "__builtins__": builtins}
    try:
        exec(compile(job["program"], "program.py", "exec"), namespace)
    except BaseException as exc:  # SystemExit too: a program that exits has not passed
        if job["mode"] == "program" and _isinstance(exc, SystemExit) and exc.code in (0, None):
            report({"stage": "done", "passed": 0, "error": None})
        report({"stage": "program", "passed": 0, "error": describe(exc)})
    if job["mode"] == "program":
        report({"stage": "done", "passed": 0, "error": None})
    # Tests see the builtins as they were before the program ran; the program's own
    # functions keep theirs (a function looks builtins up where it was defined). The tests'
    # own set-up (MBPP's test_setup_code) runs first: it may use the program's classes.
    tests = ([job["setup"]] if job["setup"] else []) + job["tests"]
    passed = -1 if job["setup"] else 0
    for index, test in _enumerate(tests):
        namespace["__builtins__"] = _dict(pristine)
        try:
            _exec(_compile(test, f"<test {index}>", "exec"), namespace)
        except _BaseException as exc:
            report({"stage": "test", "passed": _max(passed, 0),
                    "failed": "setup" if passed < 0 else passed, "error": describe(exc)})
        passed += 1
    report({"stage": "done", "passed": passed, "error": None})


if __name__ == "__main__":
    main()
