"""A real single-node SLURM cluster on loopback, from Debian's packages, for tests.

munged, MariaDB with slurmdbd (accounting, so `sacct` answers as on a lab's cluster and
submitit can follow its jobs), slurmctld and slurmd all run from one directory of their
own, on free ports, and are stopped when the `with` block ends. Nothing is written outside
that directory but munge's socket in /run/munge (where SLURM's clients look for it) and what
the jobs write. It needs root (slurmd starts jobs as their
user) and the packages slurmctld, slurmd, slurm-client, slurmdbd, munge and mariadb-server.

    with SlurmCluster(tmp_path) as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from cope.servers import free_port

PROGRAMS = ("munged", "munge", "mariadbd", "mysql_install_db", "mysql", "slurmdbd", "slurmctld", "slurmd",
            "sbatch", "sacct", "sacctmgr", "scontrol", "sinfo")
MUNGE_KEY = Path("/etc/munge/munge.key")  # made by Debian's munge package
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
PARTITION = "debug"
ACCOUNT = "lab"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a child of ours that exited is reaped here, not left a zombie
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


class SlurmCluster:
    def __init__(self, root: str | Path, cpus: int | None = None, memory_mb: int = 4000,
                 name: str = "cope") -> None:
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb
        self.name = name
        self.ports = {k: free_port() for k in ("ctld", "d", "dbd", "db")}
        self._daemons: list[tuple[str, Path]] = []  # (name, pid file)
        self._database_process: subprocess.Popen | None = None
        self.env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf"), "PATH":
                    os.environ.get("PATH", "") + ":/usr/sbin"}

    # ---- the parts
    def _munge(self) -> None:
        """munged on its standard socket (SLURM's clients look only there): the machine's
        own when it runs, else one started here and stopped at the end."""
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        state = self.root / "munge"
        state.mkdir()
        self._run(["munged", "--force", f"--socket={MUNGE_SOCKET}", f"--key-file={MUNGE_KEY}",
                   f"--pid-file={state / 'munged.pid'}", f"--log-file={state / 'munged.log'}",
                   f"--seed-file={state / 'munged.seed'}"])
        self._daemons.append(("munged", state / "munged.pid"))

    def _database(self) -> None:
        data = self.root / "db"
        self._run(["mysql_install_db", "--no-defaults", f"--datadir={data}", "--user=root",
                   "--auth-root-authentication-method=normal"])
        self.db_socket = self.root / "db.sock"
        pid = self.root / "db.pid"
        self._database_process = subprocess.Popen(["mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
                          f"--socket={self.db_socket}", f"--port={self.ports['db']}",
                          "--bind-address=127.0.0.1", f"--pid-file={pid}",
                          "--skip-name-resolve"],
                         stdout=open(self.root / "db.log", "ab"), stderr=subprocess.STDOUT,
                         start_new_session=True)
        self._daemons.append(("mariadbd", pid))
        self._wait(lambda: subprocess.run(
            ["mysql", f"--socket={self.db_socket}", "-uroot", "-e", "SELECT 1"],
            capture_output=True).returncode == 0, "MariaDB")
        self._run(["mysql", f"--socket={self.db_socket}", "-uroot", "-e",
                   "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
                   "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"])

    def _configs(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir()
        auth = "AuthType=auth/munge\n"
        (self.root / "slurmdbd.conf").write_text(
            f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={self.ports['dbd']}\n"
            f"SlurmUser=root\nLogFile={self.root / 'log' / 'slurmdbd.log'}\n"
            f"PidFile={self.root / 'slurmdbd.pid'}\nStorageType=accounting_storage/mysql\n"
            f"StorageHost=127.0.0.1\nStoragePort={self.ports['db']}\nStorageLoc=slurm_acct_db\n"
            "StorageUser=slurm\nStoragePass=slurm\n")
        (self.root / "slurmdbd.conf").chmod(0o600)
        (self.root / "slurm.conf").write_text(
            f"ClusterName={self.name}\nSlurmctldHost=localhost(127.0.0.1)\n{auth}"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"SlurmctldPort={self.ports['ctld']}\nSlurmdPort={self.ports['d']}\n"
            f"StateSaveLocation={self.root / 'state'}\nSlurmdSpoolDir={self.root / 'spool'}\n"
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}\n"
            f"SlurmdPidFile={self.root / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}\n"
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "SchedulerType=sched/backfill\nSelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_Core_Memory\nReturnToService=2\n"
            "JobAcctGatherType=jobacct_gather/none\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            "AccountingStorageEnforce=associations\n"
            f"AccountingStorageHost=127.0.0.1\nAccountingStoragePort={self.ports['dbd']}\n"
            "MinJobAge=2\nKillWait=5\n"
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=60 State=UP\n")

    def _slurm(self) -> None:
        self._run(["slurmdbd"])
        self._daemons.append(("slurmdbd", self.root / "slurmdbd.pid"))
        self._wait(lambda: subprocess.run(["sacctmgr", "-n", "list", "cluster"], env=self.env,
                                          capture_output=True).returncode == 0, "slurmdbd")
        self._run(["sacctmgr", "-i", "add", "cluster", self.name])
        # jobs need an association, as on a lab's cluster: root may charge ACCOUNT
        self._run(["sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={self.name}"])
        self._run(["sacctmgr", "-i", "add", "user", "root", f"account={ACCOUNT}",
                   f"cluster={self.name}"])
        self._run(["slurmctld"])
        self._daemons.append(("slurmctld", self.root / "slurmctld.pid"))
        self._run(["slurmd", "-N", "localhost"])
        self._daemons.append(("slurmd", self.root / "slurmd.pid"))
        self._wait(lambda: subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True
        ).stdout.strip() == "idle", "the node to be idle")

    # ---- use
    def __enter__(self) -> SlurmCluster:
        missing = missing_programs()
        if missing:
            raise RuntimeError(f"SLURM cluster: {', '.join(missing)} not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._munge()
            self._database()
            self._configs()
            self._slurm()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM to every daemon at once, then SIGKILL to those alive after 20 s."""
        pids = []
        for _, pid_file in reversed(self._daemons):
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except (FileNotFoundError, ValueError, ProcessLookupError):
                continue
        deadline = time.monotonic() + 20
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self._database_process is not None:
            self._database_process.wait(timeout=20)
        self._daemons.clear()

    def sacct(self, *args: str) -> list[dict[str, str]]:
        """sacct's records (all jobs of the cluster), as dicts of its --parsable2 columns."""
        out = subprocess.run(["sacct", "-a", "--parsable2", *args], env=self.env,
                             capture_output=True, text=True, check=True).stdout.splitlines()
        if not out:
            return []
        names = out[0].split("|")
        return [dict(zip(names, line.split("|"))) for line in out[1:]]

    def wait_for_accounting(self, array: str, tasks: int, timeout_s: float = 60.0
                            ) -> list[dict[str, str]]:
        """The records of an array job's tasks once all have reached slurmdbd (slurmctld
        sends them on its own time) and none is still pending or running."""
        def tasks_of() -> list[dict[str, str]]:
            return [j for j in self.sacct("-o", "JobID,JobName,State,Start,End", "-j", array)
                    if "_" in j["JobID"] and "." not in j["JobID"]]

        self._wait(lambda: len(done := tasks_of()) == tasks and not any(
            j["State"] in ("PENDING", "RUNNING") for j in done), f"the accounting of {array}",
            timeout_s)
        return tasks_of()

    def log(self, name: str) -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout)[-2000:]}")

    def _wait(self, ready, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"SLURM cluster: waited {timeout_s:.0f} s for {what}; logs "
                                   f"in {self.root}")
            time.sleep(0.5)
