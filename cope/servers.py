"""Model servers that a run starts and stops itself: SGLang on a GPU, vLLM on a GPU or a CPU,
llama.cpp's server on a CPU. A model with a `server:` section gets one on a free local port;
the run waits for it to be healthy, writes its log into the run directory, and stops it on
every way out (normal end, exception, Ctrl-C, SIGTERM). `server.python` names the
interpreter that has the engine installed (vLLM on a CPU lives in a venv of its own,
cope.engine_envs); null: this one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cope.errors import BackendError, ConfigError

SERVER_KINDS = ("llama_cpp", "sglang", "vllm")
SGLANG_DETERMINISTIC_FLAG = "--enable-deterministic-inference"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ManagedServer:
    def __init__(self, alias: str, kind: str, model_path: str, log_path: Path,
                 host: str = "127.0.0.1", port: int | None = None, args: list[str] | None = None,
                 startup_timeout_s: float = 600.0, deterministic: bool = True,
                 python: str | None = None, served_name: str | None = None) -> None:
        if kind not in SERVER_KINDS:
            raise ConfigError(f"models.{alias}.server.kind='{kind}': choose one of "
                              f"{', '.join(SERVER_KINDS)}.")
        self.alias = alias
        self.kind = kind
        self.model_path = model_path
        self.host = host
        self.port = port or free_port(host)
        self.args = list(args or [])
        self.startup_timeout_s = startup_timeout_s
        self.deterministic = deterministic
        self.python = python or sys.executable
        self.served_name = served_name or alias  # the model name the OpenAI routes answer to
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        if self.kind == "sglang":
            # seeds are honoured only in deterministic mode (its batch-invariant kernels are
            # slower: models.<alias>.deterministic=false leaves it off)
            flags = ([SGLANG_DETERMINISTIC_FLAG] if self.deterministic
                     and SGLANG_DETERMINISTIC_FLAG not in self.args else [])
            return [self.python, "-m", "sglang.launch_server", "--model-path", self.model_path,
                    "--host", self.host, "--port", str(self.port), *flags, *self.args]
        if self.kind == "vllm":
            # logprobs of the model's own distribution (perplexity is defined on them) and
            # the prefix cache's hits in every response's usage
            flags = ["--enable-prompt-tokens-details"]
            if self._arg("--logprobs-mode") is None:
                flags += ["--logprobs-mode", "raw_logprobs"]
            return [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model",
                    self.model_path, "--served-model-name", self.served_name, "--host", self.host,
                    "--port", str(self.port), *flags, *self.args]
        return [self.python, "-m", "llama_cpp.server", "--model", self.model_path,
                "--host", self.host, "--port", str(self.port), *self.args]

    def _arg(self, flag: str) -> str | None:
        """The value `args` give a flag (`--flag value` or `--flag=value`), else None."""
        for i, arg in enumerate(self.args):
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
            if arg == flag and i + 1 < len(self.args):
                return self.args[i + 1]
        return None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.python != sys.executable:
            env.pop("PYTHONPATH", None)  # cope's packages must not shadow the engine's own
        if self.kind == "sglang":
            # logprobs of the model's own distribution, not the temperature-scaled one:
            # perplexity confidence is defined on them
            env["SGLANG_RETURN_ORIGINAL_LOGPROB"] = "1"
        return env

    def facts(self) -> dict[str, object]:
        """What the run records about the server it started."""
        facts: dict[str, object] = {"managed": True, "kind": self.kind, "port": self.port}
        if self.kind == "sglang":
            facts["original_logprobs"] = True
        if self.kind == "vllm":
            facts["original_logprobs"] = (self._arg("--logprobs-mode") or "raw_logprobs") in (
                "raw_logprobs", "raw_logits")
            try:
                facts["version"] = httpx.get(f"http://{self.host}:{self.port}/version",
                                             timeout=10.0).json()["version"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                facts["version"] = None
        return facts

    def health_url(self) -> str:
        root = f"http://{self.host}:{self.port}"
        return f"{root}/v1/models" if self.kind == "llama_cpp" else f"{root}/health"

    def start(self) -> "ManagedServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # its own session: stopping it stops whatever it started (SGLang's workers too)
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        env=self.environment())
        log.close()
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendError(
                    f"The {self.kind} server for '{self.alias}' exited with code "
                    f"{self.process.returncode} while starting. Its log ({self.log_path}) ends:\n"
                    + self.log_tail())
            try:
                if httpx.get(self.health_url(), timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise BackendError(
            f"The {self.kind} server for '{self.alias}' was not healthy within "
            f"{self.startup_timeout_s:.0f} s. Its log ({self.log_path}) ends:\n" + self.log_tail())

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=grace_s)
        except ProcessLookupError:
            pass
