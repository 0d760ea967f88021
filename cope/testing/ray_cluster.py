"""A real single-node Ray cluster for tests: `ray start --head` on free ports, with its
session files in a directory of its own, stopped when the `with` block ends.

Ray puts the head on this machine's own address even when told 127.0.0.1 (so other nodes
could join); `address` is what `ray.init(address=...)` takes. Only the processes this
cluster started are stopped (never `ray stop`, which would end every Ray on the machine).

    with RayCluster(tmp_path, cpus=2) as cluster:
        subprocess.run(["python", "-c", f"import ray; ray.init(address={cluster.address!r})"])
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cope.servers import free_port


def ray_program() -> str | None:
    return shutil.which("ray")


class RayCluster:
    def __init__(self, root: str | Path, cpus: int = 2) -> None:
        self.root = Path(root)
        self.cpus = cpus
        self.port = free_port()
        self.temp_dir: Path | None = None  # made by __enter__, removed by stop()
        self._start: subprocess.Popen | None = None
        self.address = ""
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

    def _command(self) -> list[str]:
        ports = {"--port": self.port, "--ray-client-server-port": free_port(),
                 "--dashboard-port": free_port(), "--dashboard-agent-listen-port": free_port(),
                 "--metrics-export-port": free_port()}
        return [ray_program() or "ray", "start", "--head", "--node-ip-address=127.0.0.1",
                *(f"{flag}={port}" for flag, port in ports.items()),
                f"--num-cpus={self.cpus}", "--num-gpus=0", f"--temp-dir={self.temp_dir}",
                "--include-dashboard=false", "--disable-usage-stats"]

    def __enter__(self) -> RayCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        # Ray's socket paths must stay short (107 bytes): its session lives in /tmp
        self.temp_dir = Path(tempfile.mkdtemp(prefix="cope-ray-"))
        try:
            with open(self.root / "ray-start.log", "wb") as log:
                # a session of its own: every process the head starts is stopped as a group
                self._start = subprocess.Popen(self._command(), stdout=log,
                                               stderr=subprocess.STDOUT, env=self.env,
                                               start_new_session=True)
            if self._start.wait(timeout=120) != 0:
                raise RuntimeError(f"ray start failed:\n{self.log()[-3000:]}")
            self.address = self._gcs_address()
        except BaseException:
            self.stop()
            raise
        return self

    def _gcs_address(self) -> str:
        # ray start writes the head's address where ray.init(address="auto") looks for it
        deadline = time.monotonic() + 60
        current = self.temp_dir / "ray_current_cluster"
        while time.monotonic() < deadline:
            if current.exists() and current.read_text().strip():
                return current.read_text().strip()
            time.sleep(0.2)
        raise RuntimeError(f"ray start wrote no address:\n{self.log()[-3000:]}")

    def worker_pids(self) -> set[int]:
        """Every worker process the cluster started, by the pid its log files are named by
        (worker-<id>-<job>-<pid>.out)."""
        logs = self.temp_dir / "session_latest" / "logs"
        return {int(p.stem.rsplit("-", 1)[1]) for p in logs.glob("worker-*.out")}

    def log(self) -> str:
        path = self.root / "ray-start.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._start is not None:
            group = self._start.pid
            for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait_s
                while time.monotonic() < deadline and _group_alive(group):
                    time.sleep(0.2)
            self._start = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
