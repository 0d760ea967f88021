"""Which isolation layers this machine offers, and the command that applies them.

`bwrap` (bubblewrap): a read-only view of the root file system with home directories hidden,
a fresh size-capped tmpfs as working directory, private PID, network, IPC and UTS namespaces
(no network at all), a new terminal session, death with the parent. When we are root, bwrap
runs privileged and the program runs under an unprivileged uid of its own (setpriv), so
RLIMIT_NPROC holds and nothing outside the sandbox belongs to it. Without bwrap, `process`
keeps what a plain child process can have: its own session, the resource limits, a scrubbed
environment, a temporary directory, and (as root, when the interpreter is reachable) a
dropped uid. Which one ran is recorded with every result.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

UID_BASE = 61000  # sandboxed programs run as uid UID_BASE + worker slot (when we are root)
HIDDEN_DIRS = ("/root", "/home")  # keys, tokens and caches of the users: never visible
SANDBOX_DIR = "/tmp"  # the program's working directory inside bwrap (a fresh tmpfs)
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


@dataclass(frozen=True)
class Isolation:
    kind: str  # bwrap | process
    drop_uid: bool  # programs run under an unprivileged uid of their own
    python: str  # the interpreter that runs programs

    @property
    def layers(self) -> str:
        """What protects the machine, for the records: e.g. 'bwrap+uid+rlimits'."""
        return "+".join([self.kind] + (["uid"] if self.drop_uid else []) + ["rlimits"])


def _python() -> str:
    return os.path.realpath(sys.executable)


def _reachable_by_others(path: str) -> bool:
    """Whether a user other than the owner can execute `path` (every directory above it too)."""
    current = Path(path)
    for part in [current, *current.parents]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _binds() -> list[str]:
    """Directories the interpreter needs that live under a hidden directory."""
    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)}
    needed.add(str(Path(_python()).parent.parent))
    args: list[str] = []
    for path in sorted(needed):
        if any(path == d or path.startswith(d + "/") for d in HIDDEN_DIRS) and os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def bwrap_command(python: str, slot: int | None, tmpfs_bytes: int) -> list[str]:
    """The bwrap prefix for one program; `slot` set: run it under uid UID_BASE + slot."""
    command = ["bwrap", "--ro-bind", "/", "/"]
    for hidden in HIDDEN_DIRS:
        if os.path.isdir(hidden):
            command += ["--tmpfs", hidden]
    command += _binds()
    command += [
        "--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", SANDBOX_DIR,
        "--proc", "/proc", "--dev", "/dev", "--chdir", SANDBOX_DIR,
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--clearenv",
    ]
    for key, value in {**SAFE_ENV, "HOME": SANDBOX_DIR, "TMPDIR": SANDBOX_DIR}.items():
        command += ["--setenv", key, value]
    if slot is not None:
        uid = str(UID_BASE + slot)
        command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                    "setpriv", "--reuid", uid, "--regid", uid, "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all"]
    elif os.geteuid() != 0:
        command += ["--unshare-user", "--"]
    else:
        command += ["--"]
    return command + [python]


def _bwrap_works(drop_uid: bool) -> bool:
    command = bwrap_command(_python(), 0 if drop_uid else None, 1 << 20)
    try:
        done = subprocess.run(command + ["-I", "-c", "import os; print(os.getuid())"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if done.returncode != 0:
        log.debug("bwrap probe failed: %s", done.stderr.strip())
        return False
    return not drop_uid or done.stdout.strip() == str(UID_BASE)


@functools.cache
def detect(prefer: str = "auto") -> Isolation:
    """The strongest isolation that works here. `prefer`: auto, bwrap (required) or process."""
    if prefer not in ("auto", "bwrap", "process"):
        raise ValueError(f"sandbox isolation must be auto, bwrap or process, not {prefer!r}")
    root = os.geteuid() == 0
    python = _python()
    if prefer != "process" and shutil.which("bwrap"):
        drop = root and shutil.which("setpriv") is not None
        if _bwrap_works(drop):
            return Isolation("bwrap", drop, python)
        if drop and _bwrap_works(False):
            return Isolation("bwrap", False, python)
    if prefer == "bwrap":
        from cope.errors import ConfigError

        raise ConfigError("The sandbox needs bubblewrap, which does not work here: install it "
                          "(apt-get install -y bubblewrap) or allow isolation=process.")
    if prefer == "auto":
        log.warning("Sandbox: bubblewrap is unavailable, so model-written programs run as plain "
                    "child processes with resource limits only (no network or file-system "
                    "isolation). Install it with: apt-get install -y bubblewrap")
    return Isolation("process", root and _reachable_by_others(python), python)
