"""The sandbox: verdicts that programs cannot forge, and attacks that stay contained."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cope.sandbox import Limits, Sandbox, TestJob, detect, run_program, run_tests
from cope.sandbox.isolation import UID_BASE

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]
WRONG_ADD = "def add(a, b):\n    return a - b\n"

isolated = pytest.mark.skipif(
    detect().kind != "bwrap",
    reason="needs bubblewrap (apt-get install -y bubblewrap); only resource limits hold without it")
dropped_uid = pytest.mark.skipif(not detect().drop_uid, reason="needs root to run programs under "
                                 "a uid of their own")


def program(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


def sandbox_processes() -> list[int]:
    """Processes still running under a sandbox uid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
            except OSError:
                continue
            if UID_BASE <= uid < 65534:
                found.append(int(entry.name))
    return found


def test_a_correct_program_passes_and_a_wrong_one_fails_with_the_test_named():
    assert run_tests(ADD, ADD_TESTS).passed
    result = run_tests(WRONG_ADD, ADD_TESTS)
    assert not result.passed
    assert result.reason == "test 0 failed: AssertionError"
    assert result.n_passed == 0 and result.n_tests == 2


def test_a_syntax_error_and_an_exception_fail():
    assert "SyntaxError" in run_tests("def add(a, b) return a", ADD_TESTS).reason
    assert "ZeroDivisionError" in run_tests("x = 1 / 0\n" + ADD, ADD_TESTS).reason


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "exit(0)", "import os\nos._exit(0)",
                                       "raise SystemExit(0)"])
def test_exiting_before_the_asserts_does_not_pass(exit_call):
    result = run_tests(ADD + exit_call, ["assert add(2, 2) == 5"])
    assert not result.passed, result


def test_exiting_inside_a_test_does_not_pass():
    source = ADD + "def check(x):\n    import os\n    os._exit(0)\n"
    result = run_tests(source, ["check(1)", "assert add(2, 2) == 5"])
    assert not result.passed


def test_printing_passed_or_a_fake_verdict_does_not_pass():
    source = program("""
        import os
        print("passed")
        print("All tests passed!")
        fake = b'0123456789abcdef0123456789abcdef {"stage": "done", "passed": 1, "error": null}\\n'
        for fd in range(3, 64):
            try:
                os.write(fd, fake)
            except OSError:
                pass
        def add(a, b):
            return 0
    """)
    result = run_tests(source, ["assert add(2, 3) == 5"])
    assert not result.passed
    assert "passed" in result.stdout


def test_patched_builtins_do_not_reach_the_tests():
    source = program("""
        import builtins
        builtins.len = lambda x: 3
        builtins.sorted = lambda x: [1, 2, 3]
        builtins.exec = lambda *args, **kwargs: None
        builtins.compile = lambda *args, **kwargs: None
        builtins.AssertionError = StopIteration
        builtins.BaseException = KeyError
        def items():
            return []
    """)
    result = run_tests(source, ["assert len(items()) == 3", "assert sorted(items()) == [1, 2, 3]"])
    assert not result.passed
    assert result.reason.startswith("test 0 failed: AssertionError")


def test_the_nonce_cannot_be_reached_by_introspection():
    source = program("""
        import gc, os, sys
        found = []
        def attempt(fn):
            try:
                found.append(fn())
            except Exception as exc:
                print(type(exc).__name__, exc)
        attempt(lambda: sys._getframe(1).f_locals)
        attempt(lambda: [o for o in gc.get_objects() if isinstance(o, dict)])
        attempt(lambda: gc.get_referrers(sys.modules))
        def tb():
            try:
                raise RuntimeError
            except RuntimeError as exc:
                return exc.__traceback__.tb_frame.f_back.f_locals
        attempt(tb)
        attempt(lambda: open("/proc/self/mem", "rb"))
        attempt(lambda: __import__("ctypes"))
        import __main__
        attempt(lambda: __main__.main())
        print("found", len(found))
        def add(a, b):
            return 0
    """)
    result = run_tests(source, ["assert add(2, 3) == 5"])
    assert not result.passed
    assert "found 0" in result.stdout, result.stdout


def test_standard_library_fallbacks_for_frames_still_work():
    source = program("""
        import collections, enum, logging, typing
        Point = collections.namedtuple("Point", "x y")
        T = typing.TypeVar("T")
        Colour = enum.Enum("Colour", "RED GREEN")
        logging.getLogger("x").warning("logged")
        def norm(p):
            return p.x + p.y
    """)
    assert run_tests(source, ["assert norm(Point(1, 2)) == 3"]).passed


def test_an_infinite_loop_times_out_and_the_next_program_runs():
    result = run_tests("while True:\n    pass\n", ["assert True"], timeout=1)
    assert not result.passed and "timed out" in result.reason
    assert run_tests(ADD, ADD_TESTS).passed


@dropped_uid
def test_a_fork_bomb_is_contained_and_leaves_no_process():
    source = program("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    result = run_tests(source, ["assert True"], timeout=2)
    assert not result.passed
    assert sandbox_processes() == []


@dropped_uid
def test_the_process_count_is_limited():
    source = program("""
        import os, time
        children = 0
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
        print(children)
    """)
    out = Sandbox(Limits(processes=16)).run_program(source, timeout=5)
    assert out.ok, out
    assert int(out.stdout) < 16
    assert sandbox_processes() == []


def test_a_memory_bomb_fails_without_harm():
    limits = Limits(memory_mb=256)
    grab = Sandbox(limits).run_tests("x = bytearray(2 * 1024 ** 3)", ["assert True"])
    assert not grab.passed and "MemoryError" in grab.reason
    grow = Sandbox(limits).run_tests(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))", ["assert True"])
    assert not grow.passed and "MemoryError" in grow.reason


@isolated
def test_writes_outside_the_working_directory_fail(tmp_path):
    tmp_path.chmod(0o777)  # even a directory anyone may write to stays out of reach
    targets = [tmp_path / "escaped.txt", Path.cwd() / "escaped.txt", Path("/etc/escaped.txt")]
    source = program(f"""
        import os
        for target in {[str(t) for t in targets]!r}:
            try:
                with open(target, "w") as handle:
                    handle.write("x")
                print("wrote", target)
            except OSError as exc:
                print("refused", target, exc.errno)
        with open("inside.txt", "w") as handle:
            handle.write("fine")
        print("inside", open("inside.txt").read())
    """)
    out = run_program(source)
    assert out.ok and "inside fine" in out.stdout
    for target in targets:
        assert not target.exists()


def test_killing_the_parent_and_everything_else_fails():
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        source = program(f"""
            import os, signal
            for pid in (os.getppid(), {os.getpid()}, {bystander.pid}, 1):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError as exc:
                    print("refused", pid, exc.errno)
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            def add(a, b):
                return a + b
        """)
        result = run_tests(source, ADD_TESTS)
        assert bystander.poll() is None  # the bystander lives, and so do we
        assert result.passed and result.stdout.count("refused") == 4, result
    finally:
        bystander.kill()
        bystander.wait()
    assert run_tests(ADD, ADD_TESTS).passed


@isolated
def test_network_connections_fail():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        source = program(f"""
            import socket
            with socket.socket() as s:
                s.settimeout(2)
                print("connect", s.connect_ex(("127.0.0.1", {port})))
            try:
                socket.getaddrinfo("pypi.org", 443)
                print("resolved")
            except OSError as exc:
                print("no dns")
        """)
        out = run_program(source)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert out.ok
    assert "connect 0" not in out.stdout and "no dns" in out.stdout


def test_secrets_in_the_environment_are_not_visible(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-secret-123")
    monkeypatch.setenv("HF_TOKEN", "hf_planted_secret_456")
    source = program("""
        import os
        print(sorted(os.environ.items()))
        for path in ("/proc/1/environ", "/proc/self/environ"):
            try:
                print(open(path, "rb").read())
            except OSError:
                pass
    """)
    out = run_program(source)
    assert out.ok
    assert "planted" not in out.stdout
    assert "OPENAI_API_KEY" not in out.stdout


def test_output_is_capped():
    out = Sandbox(Limits(output_bytes=1000)).run_program("print('x' * 100000)")
    assert out.ok and out.truncated and len(out.stdout) == 1000


def test_run_program_captures_stdout():
    out = run_program("print(sum(range(10)))")
    assert out.ok and out.stdout == "45\n" and out.reason is None
    failed = run_program("print('partial')\nraise ValueError('bad')")
    assert not failed.ok and failed.stdout == "partial\n" and "ValueError: bad" in failed.reason


def test_batch_results_keep_the_jobs_order():
    jobs = [TestJob(ADD if i % 3 else WRONG_ADD, tuple(ADD_TESTS)) for i in range(12)]
    results = Sandbox(workers=4).run_tests_batch(jobs)
    assert [r.passed for r in results] == [bool(i % 3) for i in range(12)]
    assert {r.isolation for r in results} == {detect().layers}
