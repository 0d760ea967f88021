"""Runs first inside util-linux `unshare` namespaces: makes the file system read-only, drops
every privilege, then executes the runner (the `unshare` isolation, for machines without
bubblewrap).

Started as `python -I -S -B -c JAIL UID DROP WORKDIR_BYTES HIDE BINDS -- RUNNER_ARGV...` by
`unshare --mount --pid --fork --kill-child --mount-proc --net --ipc --uts` (and `--user
--map-root-user` when cope is not root), so it starts as pid 1 of a fresh PID namespace
with no network, in a mount namespace of its own. UID is the uid the program runs as; DROP
is `setuid` (cope is root) or `userns` (a nested user namespace, for an unprivileged cope);
WORKDIR_BYTES sizes the scratch tmpfs; HIDE lists the directories replaced by an empty
read-only tmpfs and BINDS the interpreter's directories under them, bound back read-only
(both joined by ":"). No json: its import costs more than the rest of the set-up.

Fails closed: if any visible mount is still writable, or the uid is still 0, or a step
fails, it exits with status 125 and says why on stderr; the program never runs. Standard
library only (ctypes for mount(2) and prctl(2)).
"""

import ctypes
import os
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 16384, 1 << 18, 1 << 21
CLONE_NEWUSER = 0x10000000
PR_SET_NO_NEW_PRIVS = 38
# per-mount options that must be kept on a remount (the kernel locks them in a user namespace)
KEPT = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
        "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
WORKDIR = "/tmp"
SCRATCH = ("/tmp", "/dev/shm")  # the only writable places: the tmpfs and a directory of it
OWN_PROC = "/proc"  # this PID namespace's procfs: its writable files belong to the sandbox

libc = ctypes.CDLL(None, use_errno=True)


def fail(message):
    os.write(2, ("cope sandbox (unshare): " + message + "\n").encode())
    os._exit(125)


def call(result, what):
    if result != 0:
        fail(f"{what}: {os.strerror(ctypes.get_errno())}")


def mount(source, target, fstype, flags, data=None):
    call(libc.mount(source.encode() if source else None, target.encode(),
                    fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                    data.encode() if data else None), f"mount {target}")


def unescape(field):
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def visible_mounts():
    """(mount point, per-mount options) of every mount a path can reach: a later mount on a
    path shadows the earlier ones there and everything mounted beneath them."""
    visible = {}
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            point, options = unescape(fields[4]), fields[5].split(",")
            below = "/" if point == "/" else point + "/"
            for other in [p for p in visible if p == point or p.startswith(below)]:
                del visible[other]
            visible[point] = options
    return visible


def make_read_only():
    for point, options in visible_mounts().items():
        if point in SCRATCH or point == OWN_PROC or "ro" in options:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= KEPT.get(option, 0)
        mount(None, point, None, flags)
    writable = [p for p, o in visible_mounts().items()
                if "ro" not in o and p not in SCRATCH and p != OWN_PROC]
    if writable:
        fail("still writable: " + ", ".join(writable))


def hide(spec):
    # the interpreter's directories are opened before their parent disappears under a tmpfs
    keep = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in spec["binds"]}
    for directory in spec["hide"]:
        if os.path.isdir(directory) and not os.path.islink(directory):
            mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    for path, descriptor in keep.items():
        os.makedirs(path, mode=0o755, exist_ok=True)
        mount(f"/proc/self/fd/{descriptor}", path, None, MS_BIND | MS_REC)
        os.close(descriptor)


def scratch(spec):
    mount("tmpfs", WORKDIR, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={spec['workdir_bytes']},mode=1777")
    if os.path.isdir("/dev/shm"):  # POSIX semaphores (multiprocessing): inside the scratch
        os.mkdir(WORKDIR + "/.shm", 0o1777)
        os.chmod(WORKDIR + "/.shm", 0o1777)
        mount(WORKDIR + "/.shm", "/dev/shm", None, MS_BIND)


def write(path, text):
    descriptor = os.open(path, os.O_WRONLY)
    try:
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)


def drop_privileges(spec):
    uid = spec["uid"]
    if spec["drop"] == "userns":
        # we are root of a user namespace that maps to the calling user: a nested namespace
        # that maps only `uid` to us leaves no root inside, and no capability after exec
        call(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
        write("/proc/self/setgroups", "deny")
        write("/proc/self/uid_map", f"{uid} 0 1")
        write("/proc/self/gid_map", f"{uid} 0 1")
    else:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # from root to another uid: every capability is cleared
    call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if 0 in os.getresuid() or 0 in os.getresgid():
        fail("the program would still run as root")


def main():
    uid, drop, workdir_bytes, hidden, binds = sys.argv[1:sys.argv.index("--")]
    spec = {"uid": int(uid), "drop": drop, "workdir_bytes": int(workdir_bytes),
            "hide": [p for p in hidden.split(":") if p], "binds": [p for p in binds.split(":") if p]}
    runner = sys.argv[sys.argv.index("--") + 1:]
    # nothing done here may reach the mount namespace we came from
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    hide(spec)
    scratch(spec)
    make_read_only()
    child = os.fork()
    if child == 0:
        drop_privileges(spec)
        os.chdir(WORKDIR)
        try:
            os.execv(runner[0], runner)
        except OSError as exc:
            fail(f"cannot start {runner[0]}: {exc}")
    # pid 1 stays behind, as bwrap's does: signals reach the program as they would anywhere
    # (the kernel drops default-action signals sent to a namespace's init), and its status
    # comes back as 128 + signal. When pid 1 leaves, every process left in here is killed.
    os.closerange(3, 65536)
    while True:
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # any step that fails leaves the program unstarted
        fail(f"{type(exc).__name__}: {exc}")
