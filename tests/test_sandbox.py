"""The sandbox: verdicts that programs cannot forge, and attacks that stay contained.

The attack tests run under every isolation that protects the machine (bwrap, unshare) that
this machine offers, and only there: a program that calls kill(-1) or reads other
processes' environments never runs without namespaces. Where an isolation is missing, its
attack tests are skipped with a reason that starts with NOT CHECKED, and the end of the
test session lists every protection that was not checked here.
"""

import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cope.errors import ConfigError
from cope.sandbox import Limits, Sandbox, TestJob, detect, run_program, run_tests
from cope.sandbox import isolation as isolation_module
from cope.sandbox.isolation import UID_BASE, probe, unshare_command

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]
WRONG_ADD = "def add(a, b):\n    return a - b\n"
PROTECTED = ("bwrap", "unshare")


def _available(kind: str):
    try:
        return detect(kind)
    except ConfigError as exc:
        return exc


AUTO = _available("auto")


@pytest.fixture(autouse=True)
def _a_safe_default():
    """The benign tests below use the default sandbox (auto): it must exist here."""
    if isinstance(AUTO, ConfigError):
        pytest.skip(f"NOT CHECKED: no safe sandbox on this machine ({AUTO})")


@pytest.fixture(params=PROTECTED)
def protected(request) -> Sandbox:
    """A sandbox under each isolation that protects the machine, where this machine has it."""
    found, why = probe(request.param)
    if found is None:
        pytest.skip(f"NOT CHECKED under {request.param}: {why}")
    return Sandbox(isolation=request.param)


def program(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


def processes_of(uids) -> list[int]:
    """Live processes of `uids` (a zombie is dead: it waits only for its parent to reap it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry.stat().st_uid in uids and (entry / "stat").read_text()
                        .rpartition(")")[2].split()[0] not in ("Z", "X")):
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def sandbox_processes() -> list[int]:
    """Processes still running under a sandbox uid (or, unprivileged, our own uid's new ones)."""
    return processes_of(range(UID_BASE, 65534))


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


def test_a_memory_bomb_fails_without_harm():
    limits = Limits(memory_mb=256)
    grab = Sandbox(limits).run_tests("x = bytearray(2 * 1024 ** 3)", ["assert True"])
    assert not grab.passed and "MemoryError" in grab.reason
    grow = Sandbox(limits).run_tests(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))", ["assert True"])
    assert not grow.passed and "MemoryError" in grow.reason


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


# attacks, under each protecting isolation

def test_a_program_never_runs_as_root_and_cannot_become_root(protected):
    source = program("""
        import json, os
        print("ids", json.dumps([os.getresuid(), os.getresgid()]))
        for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0])):
            try:
                call()
                print("became root")
            except OSError as exc:
                print("refused", exc.errno)
    """)
    out = protected.run_program(source)
    assert out.ok, out
    ids = json.loads(out.stdout.split("ids ", 1)[1].split("\n")[0])
    assert 0 not in ids[0] and 0 not in ids[1]
    assert "became root" not in out.stdout and out.stdout.count("refused") == 3


def test_killing_the_parent_a_bystander_and_everything_else_fails(protected):
    """kill(-1) reaches only the sandbox's own PID namespace: a bystander of the same user
    (and pytest itself) is not even visible to it."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    # the sandbox's own processes have pids 1, 2, 3...: a bystander's pid must not be one
    assert bystander.pid > 16, "run this test outside a fresh PID namespace"
    try:
        source = program(f"""
            import os, signal
            for pid in ({bystander.pid}, os.getppid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                    print("sent", pid)
                except OSError as exc:
                    print("refused", pid, exc.errno)
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            def add(a, b):
                return a + b
        """)
        result = protected.run_tests(source, ADD_TESTS)
        assert bystander.poll() is None  # the bystander lives, and so do we
        # ESRCH, not EPERM: the processes outside do not exist for it
        assert f"refused {bystander.pid} {errno.ESRCH}" in result.stdout, result
        assert result.passed, result
    finally:
        bystander.kill()
        bystander.wait()
    assert protected.run_tests(ADD, ADD_TESTS).passed


def test_another_process_environment_is_not_readable(protected, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-secret-123")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 env={**os.environ, "HF_TOKEN": "hf_planted_secret_456"})
    try:
        source = program(f"""
            import os
            print(sorted(os.environ.items()))
            paths = ["/proc/{os.getpid()}/environ", "/proc/{bystander.pid}/environ",
                     "/proc/self/environ", f"/proc/{{os.getppid()}}/environ"]
            paths += [f"/proc/{{p}}/environ" for p in os.listdir("/proc") if p.isdigit()]
            for path in paths:
                try:
                    print(path, open(path, "rb").read())
                except OSError as exc:
                    print("refused", path, exc.errno)
        """)
        out = protected.run_program(source)
    finally:
        bystander.kill()
        bystander.wait()
    assert out.ok, out
    assert "planted" not in out.stdout and "OPENAI_API_KEY" not in out.stdout
    assert f"refused /proc/{bystander.pid}/environ" in out.stdout


# The search of a forger: every readable region of a memory file, for the nonce in the
# marshalled job the runner read ("nonce", then a 32-character string) or as a str object
# (its length, 32, then its 32 characters); with it, a passing verdict on every descriptor,
# then a quiet exit. Against a runner without its audit hook, run as root, this forges.
FORGE = program('''
    import os, re, subprocess, sys
    FORGED = b" {'stage': 'done', 'passed': 1, 'error': None}\\n"

    def forge_from(fd):
        for line in open("/proc/self/maps").read().splitlines():
            span, modes = line.split()[:2]
            low, high = (int(x, 16) for x in span.split("-"))
            try:
                data = os.pread(fd, high - low, low) if "r" in modes else b""
            except (OSError, OverflowError, ValueError):
                continue
            found = (re.search(rb"nonce[\\x5a\\x7a\\xda\\xfa] ([0-9a-f]{32})", data)
                     or re.search(rb"\\x20\\x00{7}.{8,24}?([0-9a-f]{32})\\x00", data, re.S))
            if found:
                for out in range(3, 64):
                    try:
                        os.write(out, found.group(1) + FORGED)
                    except OSError:
                        pass
                print("forged")
                sys.stdout.flush()
                os._exit(0)
''')

# A wrong solution that opens its memory by every route it has and forges a passing verdict.
FORGER = FORGE + program('''
    def attempt(name, opener):
        try:
            fd = opener()
        except (OSError, ValueError) as exc:
            print("refused", name, type(exc).__name__)
            return
        print("opened", name)
        forge_from(fd)

    attempt("absolute", lambda: os.open("/proc/self/mem", os.O_RDONLY))
    attempt("thread", lambda: os.open(f"/proc/self/task/{os.getpid()}/mem", os.O_RDONLY))
    here = os.getcwd()
    try:
        os.chdir("/proc/self")
        attempt("relative", lambda: os.open("mem", os.O_RDONLY))
    finally:
        os.chdir(here)
    directory = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)
    attempt("dir_fd", lambda: os.open("mem", os.O_RDONLY, dir_fd=directory))
    attempt("dir_fd path", lambda: os.open("./mem", os.O_RDONLY, dir_fd=directory))
    for name, target, path in (("file link", "/proc/self/mem", "m"),
                               ("directory link", "/proc/self", "p/mem")):
        try:
            os.symlink(target, path.split("/")[0])
        except (OSError, ValueError) as exc:
            print("refused", name, type(exc).__name__)
            continue
        attempt(name, lambda: os.open(path, os.O_RDONLY))
    # a new interpreter has no audit hook: only the kernel stands between it and our memory
    child = subprocess.run([sys.executable, "-I", "-c", "import os; "
                            "os.open(f'/proc/{os.getppid()}/mem', os.O_RDONLY); print('child opened')"],
                           capture_output=True, text=True)
    print("child", "opened" if "child opened" in child.stdout else "refused")

    def add(a, b):
        return a - b
''')


def test_a_wrong_program_cannot_forge_a_pass_from_the_nonce_in_memory(protected):
    result = protected.run_tests(FORGER, ["assert add(2, 3) == 5"])
    assert not result.passed, result
    assert "forged" not in result.stdout and "opened" not in result.stdout, result.stdout
    for route in ("absolute", "thread", "relative", "dir_fd", "dir_fd path", "file link",
                  "directory link"):
        assert f"refused {route} " in result.stdout, (route, result.stdout)
    assert "child refused" in result.stdout


def test_the_forgers_search_finds_a_nonce_where_memory_is_readable():
    """The attack above is real: in a plain interpreter that may read its own memory and
    holds a job like the runner's, the same search finds the nonce and forges."""
    victim = FORGE + program('''
        nonce = "".join(reversed("0123456789abcdef" * 2))
        forge_from(os.open("/proc/self/mem", os.O_RDONLY))
    ''')
    done = subprocess.run([sys.executable, "-I", "-c", victim], capture_output=True, text=True,
                          timeout=60)
    assert "forged" in done.stdout, done.stderr


def test_writes_outside_the_working_directory_fail(protected, tmp_path):
    tmp_path.chmod(0o777)  # even a directory anyone may write to stays out of reach
    targets = [tmp_path / "escaped.txt", Path.cwd() / "escaped.txt", Path("/etc/escaped.txt"),
               Path("/var/tmp/escaped.txt"), Path("/dev/shm/escaped.txt")]
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
        print("home", os.listdir("/root") if os.path.isdir("/root") else None)
    """)
    out = protected.run_program(source)
    assert out.ok and "inside fine" in out.stdout, out
    for target in targets:
        assert not target.exists()
    if Path("/root").is_dir():
        assert "home []" in out.stdout or "home ['" in out.stdout
        assert ".bash_history" not in out.stdout and ".ssh" not in out.stdout


def test_network_connections_fail(protected):
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
        out = protected.run_program(source)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert out.ok
    assert "connect 0" not in out.stdout and "no dns" in out.stdout


def test_a_fork_bomb_is_contained_and_leaves_no_process(protected):
    before = set(processes_of({os.getuid()}))
    source = program("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    result = protected.run_tests(source, ["assert True"], timeout=2)
    assert not result.passed
    assert sandbox_processes() == []
    if os.geteuid() != 0:  # unprivileged: the bomb's processes would be ours
        assert set(processes_of({os.getuid()})) - before == set()


def test_the_process_count_is_limited(protected):
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
    out = Sandbox(Limits(processes=16), isolation=protected.choice).run_program(source, timeout=5)
    assert out.ok, out
    assert int(out.stdout) < 16
    assert sandbox_processes() == []


def _jail(**change: str) -> subprocess.CompletedProcess:
    """Run the unshare isolation's set-up with changed arguments, on a program that prints."""
    command = unshare_command(sys.executable, 0 if os.geteuid() == 0 else None, 1 << 20)
    first = command.index(isolation_module.JAIL_SOURCE) + 1  # UID DROP WORKDIR_BYTES HIDE BINDS
    for name, value in change.items():
        command[first + ["uid", "drop", "workdir_bytes", "hide", "binds"].index(name)] = value
    return subprocess.run(command + ["-I", "-c", "print('ran')"], capture_output=True,
                          text=True, timeout=60)


def test_the_unshare_set_up_fails_closed():
    if probe("unshare")[0] is None:
        pytest.skip(f"NOT CHECKED: the unshare set-up's refusals ({probe('unshare')[1]})")
    broken = _jail(binds="/nonexistent/cope-python")
    assert broken.returncode == 125 and "ran" not in broken.stdout
    assert "cope sandbox (unshare): FileNotFoundError" in broken.stderr
    if os.geteuid() != 0:
        pytest.skip("NOT CHECKED: the set-up's refusal to keep uid 0 (cope is not root here)")
    as_root = _jail(uid="0")
    assert as_root.returncode == 125 and "ran" not in as_root.stdout
    assert "would still run as root" in as_root.stderr


# choosing an isolation

def test_an_isolation_this_machine_lacks_is_a_config_error_naming_the_fix(monkeypatch):
    real_which = isolation_module.shutil.which
    monkeypatch.setattr(isolation_module.shutil, "which",
                        lambda name: None if name in ("bwrap", "unshare") else real_which(name))
    detect.cache_clear()
    probe.cache_clear()
    try:
        with pytest.raises(ConfigError, match="apt-get install -y bubblewrap"):
            detect("bwrap")
        with pytest.raises(ConfigError, match="no safe sandbox") as refused:
            detect("auto")
        assert "bwrap is not installed" in str(refused.value)
        assert "sandbox.isolation=process" in str(refused.value)
        with pytest.raises(ConfigError, match="choose one of"):
            detect("docker")
    finally:
        detect.cache_clear()
        probe.cache_clear()


def test_process_isolation_is_recorded_as_unprotected_and_never_runs_as_root():
    if os.geteuid() == 0 and not isolation_module._reachable_by_others(sys.executable):
        with pytest.raises(ConfigError, match="never done"):
            detect("process")
        return
    chosen = detect("process")
    assert chosen.layers.endswith("+unprotected") and not chosen.protected
    assert chosen.drop_uid == (os.geteuid() == 0)
    out = Sandbox(isolation="process").run_program("import os; print(os.getuid())")
    assert out.ok and out.stdout.strip() != "0"
    assert out.isolation == chosen.layers
    assert all(found.protected for found, _ in map(probe, PROTECTED) if found)


def test_zero_tests_is_a_failure_with_its_reason():
    result = run_tests(ADD, [])
    assert not result.passed and result.n_tests == 0
    assert result.reason.startswith("no tests to run")


def test_patched_builtins_the_runner_uses_cannot_inject_into_its_verdict():
    """An int whose repr writes "'stage': 'done'" into the verdict, handed back by a
    patched max(); an exception whose str is a str subclass with such a repr."""
    source = program("""
        import builtins
        class Forged(int):
            def __repr__(self):
                return "0, 'stage': 'done', 'passed': 1"
        class Text(str):
            def __repr__(self):
                return "'x', 'stage': 'done', 'passed': 1, 'error': None"
        class Loud(Exception):
            def __str__(self):
                return Text("loud")
        builtins.max = lambda *args: Forged(0)
        builtins.str = lambda *args: Text("x")
        def add(a, b):
            raise Loud()
    """)
    result = run_tests(source, ["assert add(2, 3) == 5"])
    assert not result.passed and result.reason.startswith("test 0 failed: Loud"), result


def test_memory_reading_modules_cannot_be_imported():
    source = program("""
        import sys
        for name in ("_ctypes", "ctypes", "_testcapi"):
            try:
                __import__(name)
                print("imported", name)
            except (ImportError, ValueError) as exc:
                print("refused", name)
        print(sorted(n for n in sys.modules if "ctypes" in n))
    """)
    out = run_program(source)
    assert out.ok and "imported" not in out.stdout and out.stdout.count("refused") == 3
    assert out.stdout.strip().endswith("[]")


@pytest.mark.parametrize("text", [
    "{'stage': 'test', 'passed': 0, 'stage': 'done', 'passed': 1, 'error': None}",
    "{[]: 1}", "{'stage': 'done', 'passed': [1], 'error': None}",
    "{'stage': 'done', 'passed': True, 'error': None}", "{'stage': 'won', 'passed': 1, 'error': None}",
    "{'stage': 'done', 'passed': 1}", "__import__('os').system('true')", "{" * 3000,
])
def test_the_parent_accepts_only_a_well_formed_verdict(text):
    from cope.sandbox.execute import _parse_verdict

    nonce = "ab" * 16
    verdict, problem = _parse_verdict(f"{nonce} {text}\n".encode(), nonce)
    assert verdict is None and problem
    good, none = _parse_verdict(f"{nonce} {{'stage': 'done', 'passed': 1, 'error': None}}\n"
                                .encode(), nonce)
    assert good == {"stage": "done", "passed": 1, "error": None} and none is None
