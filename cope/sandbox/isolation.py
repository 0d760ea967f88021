"""Which isolation this machine offers for model-written programs, and the command for it.

Every accepted isolation but one runs a program in private PID, network, IPC and UTS
namespaces (it can signal and see only its own processes, and has no network), on a
read-only view of the file system with the users' home directories and /run hidden, with a
fresh size-capped tmpfs as its only writable place, and never as uid 0:

- `bwrap`: bubblewrap. As root it runs privileged and the program drops to an unprivileged
  uid of its own (setpriv), so RLIMIT_NPROC holds and nothing outside belongs to it; as an
  ordinary user it runs in a user namespace.
- `unshare`: util-linux `unshare` and cope's own set-up (`_jail.py`), for machines without
  bubblewrap. As root the program drops to a uid of its own; as an ordinary user it runs
  as a non-root uid of a nested user namespace (unprivileged user namespaces must be on).
- `process`: a plain child process with resource limits and a scrubbed environment, and
  (as root) an unprivileged uid. It cannot stop a program from signalling the user's other
  processes or reading their files, so it is never chosen on its own: only
  `sandbox.isolation=process` selects it, and its records say `unprotected`.

`auto` takes bwrap, then unshare, and refuses to run programs when neither works, saying
what to install. Which isolation ran is recorded with every result (`Isolation.layers`).
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

from cope.errors import ConfigError

log = logging.getLogger(__name__)

UID_BASE = 61000  # sandboxed programs run as uid UID_BASE + worker slot (when we are root)
HIDDEN_DIRS = ("/root", "/home", "/run")  # keys, tokens, caches and sockets: never visible
SANDBOX_DIR = "/tmp"  # the program's working directory: a fresh tmpfs
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
CHOICES = ("auto", "bwrap", "unshare", "process")
JAIL_SOURCE = (Path(__file__).parent / "_jail.py").read_text(encoding="utf-8")
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap; Fedora: "
                "dnf install bubblewrap), or on Linux allow unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1). On macOS or Windows run cope's "
                "code tasks in a Linux VM or container. sandbox.isolation=process runs them "
                "unprotected, at your own risk")

# what records written before the layers were spelled out call the same isolation
FORMER_LAYERS = {"bwrap+uid+rlimits": "bwrap+pidns+netns+rofs+uid+rlimits",
                 "bwrap+rlimits": "bwrap+pidns+netns+rofs+userns+rlimits",
                 "process+uid+rlimits": "process+uid+rlimits+unprotected",
                 "process+rlimits": "process+rlimits+unprotected"}


@dataclass(frozen=True)
class Isolation:
    kind: str  # bwrap | unshare | process
    drop_uid: bool  # programs run under an unprivileged uid of their own (cope is root)
    python: str  # the interpreter that runs programs
    userns: bool = False  # programs run in a user namespace (cope is not root)

    @property
    def protected(self) -> bool:
        return self.kind != "process"

    @property
    def layers(self) -> str:
        """What protects the machine, for the records: e.g. 'bwrap+pidns+netns+rofs+uid+rlimits'."""
        parts = [self.kind] + (["pidns", "netns", "rofs"] if self.protected else [])
        parts += (["uid"] if self.drop_uid else []) + (["userns"] if self.userns else [])
        return "+".join(parts + ["rlimits"] + ([] if self.protected else ["unprotected"]))


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


@functools.cache
def _hidden_dirs() -> tuple[str, ...]:
    """HIDDEN_DIRS as they are on this machine: a symbolic link (/home -> var/home on some
    systems) hides what it points to."""
    return tuple(dict.fromkeys(os.path.realpath(d) for d in HIDDEN_DIRS if os.path.isdir(d)))


@functools.cache
def _interpreter_dirs() -> tuple[str, ...]:
    """Directories the interpreter needs that live under a hidden directory."""
    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)}
    needed.add(str(Path(_python()).parent.parent))
    hidden = _hidden_dirs()
    return tuple(path for path in sorted(needed) if os.path.isdir(path)
                 and any(path == d or path.startswith(d + "/") for d in hidden))


def bwrap_command(python: str, slot: int | None, tmpfs_bytes: int) -> list[str]:
    """The bwrap prefix for one program; `slot` set: run it under uid UID_BASE + slot."""
    command = ["bwrap", "--ro-bind", "/", "/"]
    hidden_dirs = _hidden_dirs()
    for hidden in hidden_dirs:
        command += ["--tmpfs", hidden]
    for path in _interpreter_dirs():
        # the directories above it, inside a hidden one, reachable by the program's uid
        hidden = next((d for d in hidden_dirs if path.startswith(d + "/")), path)
        parents = [str(p) for p in reversed(Path(path).parents) if str(p).startswith(hidden + "/")]
        for parent in parents:
            command += ["--perms", "0755", "--dir", parent]
        command += ["--ro-bind", path, path]
    for hidden in hidden_dirs:  # empty, and never a place to write
        command += ["--remount-ro", hidden]
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
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    else:
        command += ["--unshare-user", "--"]
    return command + [python]


def unshare_command(python: str, slot: int | None, tmpfs_bytes: int) -> list[str]:
    """The util-linux prefix for one program (see `_jail.py`); `slot` set: we are root and
    the program runs under uid UID_BASE + slot, else under a nested user namespace."""
    spec = [str(UID_BASE + (slot or 0)), "userns" if slot is None else "setuid", str(tmpfs_bytes),
            ":".join(_hidden_dirs()), ":".join(_interpreter_dirs())]
    # setpriv --pdeathsig: unshare (and with it the namespaces) dies if cope does
    command = ["setpriv", "--pdeathsig", "KILL", "--", "unshare"]
    if slot is None:
        command += ["--user", "--map-root-user"]
    command += ["--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--net", "--ipc",
                "--uts", "--", python, "-I", "-S", "-B", "-c", JAIL_SOURCE, *spec, "--"]
    return command + [python]


def _probe(command: list[str], expected_uid: int | None) -> str | None:
    """None when `command` runs a program as it should here, else why not."""
    try:
        done = subprocess.run(command + ["-I", "-c", "import os; print(os.getuid())"],
                              capture_output=True, text=True, timeout=60,
                              env=dict(SAFE_ENV), cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    uid = done.stdout.strip()
    if uid == "0" or (expected_uid is not None and uid != str(expected_uid)):
        return f"the probe ran as uid {uid}, not as an unprivileged uid"
    return None


def _try_bwrap(python: str, root: bool) -> tuple[Isolation | None, str]:
    if not shutil.which("bwrap"):
        return None, "bwrap is not installed"
    if root and not shutil.which("setpriv"):
        return None, "bwrap as root needs setpriv (util-linux) to drop to an unprivileged uid"
    why = _probe(bwrap_command(python, 0 if root else None, 1 << 20), UID_BASE if root else None)
    if why:
        return None, f"bwrap does not work here: {why}"
    return Isolation("bwrap", root, python, userns=not root), ""


def _try_unshare(python: str, root: bool) -> tuple[Isolation | None, str]:
    missing = [tool for tool in ("unshare", "setpriv") if not shutil.which(tool)]
    if sys.platform != "linux" or missing:
        return None, f"util-linux {' and '.join(missing) or 'namespaces'} not available"
    why = _probe(unshare_command(python, 0 if root else None, 1 << 20), UID_BASE)
    if why:
        return None, f"unshare does not work here: {why}"
    return Isolation("unshare", root, python, userns=not root), ""


@functools.cache
def probe(kind: str) -> tuple[Isolation | None, str]:
    """Whether `kind` (bwrap or unshare) protects programs here: the isolation, or why not."""
    attempt = {"bwrap": _try_bwrap, "unshare": _try_unshare}[kind]
    return attempt(_python(), os.geteuid() == 0)


@functools.cache
def detect(prefer: str = "auto") -> Isolation:
    """The isolation to use: `prefer` auto (the strongest that works), bwrap or unshare (that
    one, or a ConfigError), or process (unprotected, chosen explicitly)."""
    if prefer not in CHOICES:
        raise ConfigError(f"sandbox.isolation={prefer!r}: choose one of {', '.join(CHOICES)}.")
    root = os.geteuid() == 0
    python = _python()
    if prefer == "process":
        if root and not _reachable_by_others(python):
            raise ConfigError(
                f"sandbox.isolation=process: cope runs as root and the interpreter {python} is "
                "not reachable by an unprivileged uid, so programs would run as root; that is "
                "never done. Use an interpreter outside a private home directory, or install "
                "bubblewrap (apt-get install -y bubblewrap) and use isolation=auto.")
        log.warning("Sandbox: isolation=process: model-written programs run UNPROTECTED (no "
                    "namespaces; they can signal this user's processes and read their files).")
        return Isolation("process", root, python)
    reasons = []
    for kind in ("bwrap", "unshare"):
        if prefer in ("auto", kind):
            isolation, why = probe(kind)
            if isolation is not None:
                return isolation
            reasons.append(why)
    raise ConfigError(f"sandbox.isolation={prefer}: no safe sandbox for model-written programs "
                      f"on this machine ({'; '.join(reasons)}). To run code tasks, "
                      f"{INSTALL_HINT}.")
