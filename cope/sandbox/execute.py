"""Start one sandboxed program, collect its capped output and its verdict, kill what is left."""

from __future__ import annotations

import ast
import marshal
import os
import queue
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cope.sandbox.isolation import (SAFE_ENV, UID_BASE, Isolation, bwrap_command, detect,
                                    unshare_command)

RUNNER_SOURCE = (Path(__file__).parent / "_runner.py").read_text(encoding="utf-8")
VERDICT_CAP = 4096


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024  # address space (RLIMIT_AS)
    processes: int = 32  # processes of the program's uid (RLIMIT_NPROC; needs a dropped uid)
    file_mb: int = 16  # largest file it may write (RLIMIT_FSIZE)
    workdir_mb: int = 64  # its working directory (bwrap: a tmpfs of this size)
    open_files: int = 256
    output_bytes: int = 64 * 1024  # stdout and stderr kept, each; the rest is read and dropped
    startup_s: float = 5.0  # added to the timeout for the interpreter's start on a busy machine


@dataclass
class TestResult:
    __test__ = False  # not a pytest class
    passed: bool
    reason: str | None  # why it failed; None when it passed
    n_passed: int  # tests that passed before the first failure
    n_tests: int
    stdout: str
    stderr: str
    duration_s: float
    isolation: str


@dataclass
class ProgramResult:
    ok: bool  # ran to its end without an exception, in time
    stdout: str
    stderr: str
    reason: str | None
    truncated: bool  # stdout or stderr was longer than the cap
    duration_s: float
    isolation: str


@dataclass(frozen=True)
class TestJob:
    __test__ = False  # not a pytest class
    program: str
    tests: tuple[str, ...]
    setup: str = ""  # run before the program, in its namespace (MBPP's test_setup_code)


@dataclass
class _Raw:
    verdict: dict[str, Any] | None
    problem: str | None  # why there is no usable verdict
    stdout: str
    stderr: str
    truncated: bool
    duration_s: float


class _Slots:
    """Worker slots; each has a uid of its own so programs never share a process count."""

    def __init__(self, count: int = 64) -> None:
        base = UID_BASE + (os.getpid() % 64) * count  # another process's sandboxes: other uids
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(count):
            self._free.put(base - UID_BASE + slot)

    def take(self) -> int:
        return self._free.get()

    def give(self, slot: int) -> None:
        self._free.put(slot)


_SLOTS = _Slots()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _parse_verdict(data: bytes, nonce: str) -> tuple[dict[str, Any] | None, str | None]:
    if not data:
        return None, None
    text = data.decode("utf-8", "replace")
    prefix = nonce + " "
    if not text.startswith(prefix) or not text.endswith("\n") or text.count("\n") != 1:
        return None, "its verdict channel was written by something other than the harness"
    try:
        verdict = _verdict(text[len(prefix):])
    except Exception:  # whatever the text, one program's bad verdict fails only that program
        return None, "its verdict channel held an unreadable verdict"
    return (verdict, None) if verdict is not None else (None, "unreadable verdict")


VERDICT_TYPES = {"stage": (str,), "passed": (int,), "failed": (int, str), "error": (str, type(None))}
STAGES = ("done", "program", "test", "harness")


def _verdict(text: str) -> dict[str, Any] | None:
    """The runner's verdict, a dict literal of exactly its fields and their types (no key
    twice: a repeated key would let a later value stand), else None."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Dict) or not all(isinstance(k, ast.Constant) for k in node.keys):
        return None
    keys = [k.value for k in node.keys]
    if len(set(keys)) != len(keys) or not {"stage", "passed", "error"} <= set(keys) <= set(VERDICT_TYPES):
        return None
    verdict = ast.literal_eval(node)  # literals only: nothing is run
    for key, value in verdict.items():
        if type(value) not in VERDICT_TYPES[key]:
            return None
    return verdict if verdict["stage"] in STAGES else None


def execute(job: dict[str, Any], timeout: float, limits: Limits, isolation: Isolation, slot: int
            ) -> _Raw:
    """Run the in-sandbox runner on `job` (mode, program, setup, tests) and read its verdict."""
    nonce = secrets.token_hex(16)
    payload = dict(job, nonce=nonce, limits={
        "cpu_s": int(timeout) + 1, "memory_bytes": limits.memory_mb << 20,
        "file_bytes": limits.file_mb << 20, "open_files": limits.open_files,
        "processes": limits.processes,
    })
    setup_fd = os.memfd_create("cope-sandbox-job")
    os.write(setup_fd, marshal.dumps(payload))
    os.lseek(setup_fd, 0, os.SEEK_SET)
    read_end, write_end = os.pipe()
    own_slot = slot if isolation.drop_uid else None  # None: no uid of its own (not root)
    uid = None if own_slot is None else UID_BASE + own_slot
    workdir = None
    kwargs: dict[str, Any] = {}
    if isolation.kind in ("bwrap", "unshare"):
        make = bwrap_command if isolation.kind == "bwrap" else unshare_command
        prefix = make(isolation.python, own_slot, limits.workdir_mb << 20)
        env = dict(SAFE_ENV)
    else:
        workdir = tempfile.mkdtemp(prefix="cope-sandbox-")
        if uid is not None:
            os.chown(workdir, uid, uid)
            kwargs = {"user": uid, "group": uid, "extra_groups": []}
        prefix = [isolation.python]
        env = {**SAFE_ENV, "HOME": workdir, "TMPDIR": workdir}
    command = prefix + ["-I", "-S", "-B", "-c", RUNNER_SOURCE, str(setup_fd), str(write_end)]
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(setup_fd, write_end), start_new_session=True, env=env, cwd=workdir,
            **kwargs)
    finally:
        os.close(setup_fd)
        os.close(write_end)
    try:
        streams, truncated, timed_out = _collect(process, read_end, start + timeout + limits.startup_s,
                                                 limits.output_bytes)
    finally:
        os.close(read_end)
        _kill(process, uid, namespaced=isolation.protected)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    duration = time.monotonic() - start
    stdout, stderr = (streams[k].decode("utf-8", "replace") for k in ("stdout", "stderr"))
    verdict, problem = _parse_verdict(streams["verdict"], nonce)
    if timed_out:
        verdict, problem = None, f"timed out after {timeout:g} s"
    elif verdict is None and problem is None:
        code = process.returncode
        # bwrap and unshare report 128 + signal
        number = -code if code < 0 else code - 128 if code > 128 and isolation.protected else 0
        if number == signal.SIGXCPU:
            problem = f"timed out (used its {timeout:g} s of CPU time)"
        elif number:
            problem = f"killed by {_signal_name(number)} (a resource limit?)"
        elif code == 125 and isolation.kind == "unshare":  # _jail.py refused to run it
            why = (stderr.strip().splitlines() or ["?"])[-1]
            problem = f"the sandbox could not be set up: {why}"
        else:
            problem = f"exited with status {code} before the harness gave a verdict"
    return _Raw(verdict, problem, stdout, stderr, truncated, duration)


def _collect(process: subprocess.Popen, verdict_fd: int, deadline: float, cap: int
             ) -> tuple[dict[str, bytes], bool, bool]:
    """Read stdout, stderr and the verdict pipe until all close or the deadline passes."""
    caps = {"stdout": cap, "stderr": cap, "verdict": VERDICT_CAP}
    chunks: dict[str, bytearray] = {name: bytearray() for name in caps}
    truncated = False
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    selector.register(verdict_fd, selectors.EVENT_READ, "verdict")
    open_streams = 3
    exited_at: float | None = None
    try:
        while open_streams:
            now = time.monotonic()
            if now >= deadline:
                return {k: bytes(v) for k, v in chunks.items()}, truncated, True
            if exited_at is None and process.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # a leftover child holds a pipe open; it is killed next
            for key, _ in selector.select(timeout=min(0.1, deadline - now)):
                fd = key.fd
                data = os.read(fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                room = caps[key.data] - len(chunks[key.data])
                if len(data) > room:
                    truncated = truncated or key.data != "verdict"
                    data = data[:max(room, 0)]
                chunks[key.data] += data
    finally:
        selector.close()
    return {k: bytes(v) for k, v in chunks.items()}, truncated, False


def _kill(process: subprocess.Popen, uid: int | None, namespaced: bool) -> None:
    """Kill the program's session, and with it its PID namespace (bwrap, unshare), then every
    process left under its uid: a child may have left the session, and the next program in
    this slot must start with its full process count."""
    init = _first_child(process.pid) if namespaced else None  # the namespace's pid 1
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    if init is not None:
        _wait_until_dead(init)  # its namespace's processes are gone before it is
    if uid is None:
        return
    deadline = time.monotonic() + 30
    while (left := _processes_of(uid)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


def _first_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _wait_until_dead(pid: int, timeout: float = 30.0) -> None:
    """Until `pid` is a zombie or gone: the kernel kills and reaps every process of a PID
    namespace before its init becomes a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.005)


def _processes_of(uid: int) -> list[int]:
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                try:
                    if entry.stat(follow_symlinks=False).st_uid == uid:
                        found.append(int(entry.name))
                except OSError:
                    pass
    return found


def test_result(raw: _Raw, n_tests: int, isolation: Isolation) -> TestResult:
    verdict = raw.verdict or {}
    n_passed = int(verdict.get("passed", 0))
    passed = raw.verdict is not None and verdict.get("stage") == "done" and n_passed == n_tests
    reason = None
    if not passed:
        if raw.problem is not None:
            reason = raw.problem
        elif verdict.get("stage") == "program":
            reason = f"the program failed: {verdict.get('error')}"
        elif verdict.get("stage") == "harness":
            reason = f"the harness refused: {verdict.get('error')}"
        elif verdict.get("stage") == "test":
            reason = f"test {verdict.get('failed')} failed: {verdict.get('error')}"
        else:
            reason = f"{n_passed} of {n_tests} tests ran"
    return TestResult(passed, reason, n_passed, n_tests, raw.stdout, raw.stderr,
                      round(raw.duration_s, 4), isolation.layers)


class Sandbox:
    """Runs model-written programs under the strongest isolation available, in parallel."""

    def __init__(self, limits: Limits | None = None, workers: int | None = None,
                 isolation: str = "auto") -> None:
        self.limits = limits or Limits()
        self.workers = workers or max(2, 2 * (os.cpu_count() or 1))
        self.choice = isolation
        self.isolation = detect(isolation)

    def _with_slot(self, job: dict[str, Any], timeout: float) -> _Raw:
        slot = _SLOTS.take()
        try:
            return execute(job, timeout, self.limits, self.isolation, slot)
        finally:
            _SLOTS.give(slot)

    def run_tests(self, program: str, tests: Sequence[str], timeout: float = 10.0,
                  setup: str = "") -> TestResult:
        """Run `program`, then each test (an assert statement or a snippet) in its namespace."""
        if not tests:  # a program that ran no test has shown nothing
            return TestResult(False, "no tests to run: a program passes only the tests it ran",
                              0, 0, "", "", 0.0, self.isolation.layers)
        job = {"mode": "tests", "program": program, "tests": list(tests), "setup": setup}
        return test_result(self._with_slot(job, timeout), len(tests), self.isolation)

    def run_tests_batch(self, jobs: Sequence[TestJob], timeout: float = 10.0
                        ) -> list[TestResult]:
        """Many programs with their tests, `workers` at a time; results in the jobs' order."""
        if not jobs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
            return list(pool.map(
                lambda job: self.run_tests(job.program, job.tests, timeout, job.setup), jobs))

    def run_program(self, program: str, timeout: float = 10.0) -> ProgramResult:
        """Run `program` alone and capture what it prints (program-of-thought answers)."""
        job = {"mode": "program", "program": program, "tests": [], "setup": ""}
        raw = self._with_slot(job, timeout)
        verdict = raw.verdict or {}
        ok = raw.verdict is not None and verdict.get("stage") == "done"
        reason = None if ok else (raw.problem or f"the program failed: {verdict.get('error')}")
        return ProgramResult(ok, raw.stdout, raw.stderr, reason, raw.truncated,
                             round(raw.duration_s, 4), self.isolation.layers)
