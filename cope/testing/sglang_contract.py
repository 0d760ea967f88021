"""SGLang's HTTP JSON contract, read from SGLang's own wheel.

SGLang generates `sglang/api/v1/api_types.py` from its schema and refuses every /generate
body that the module's decoder rejects (HTTP 400 with the decoder's text). The module needs
only msgspec, so the stub server and the contract tests load it from the pinned wheel,
downloaded once without its dependencies and checked against the wheel's RECORD, instead of
from a copy of the schema.

    api = load()                       # the module; ContractUnavailable when it cannot be had
    api.GenerateRequest.from_json_value(body)
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

from cope.paths import machine_cache

SGLANG_VERSION = "0.5.23"
MODULE = "sglang/api/v1/api_types.py"


class ContractUnavailable(RuntimeError):
    """The contract module is neither cached nor downloadable here (offline, no msgspec)."""


def _recorded_digest(wheel: zipfile.ZipFile, member: str) -> str:
    record = next(name for name in wheel.namelist() if name.endswith(".dist-info/RECORD"))
    for line in wheel.read(record).decode().splitlines():
        name, _, rest = line.partition(",")
        if name == member:
            return rest.split(",")[0].removeprefix("sha256=")
    raise ContractUnavailable(f"{member} is not in the wheel's RECORD")


def _extract(wheel_path: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel_path) as wheel:
        data = wheel.read(MODULE)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if digest != _recorded_digest(wheel, MODULE):
            raise ContractUnavailable(f"{MODULE} does not match the sha256 in {wheel_path.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)  # another process may be extracting the same file


def _download(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--quiet", "--dest", tmp, f"sglang=={SGLANG_VERSION}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ContractUnavailable(f"pip download sglang=={SGLANG_VERSION}: {exc}") from None
        wheels = list(Path(tmp).glob("sglang-*.whl"))
        if done.returncode != 0 or not wheels:
            raise ContractUnavailable(f"pip download sglang=={SGLANG_VERSION} failed: "
                                      + (done.stderr.strip().splitlines() or ["no wheel"])[-1])
        _extract(wheels[0], target)


_LOADED: list = []  # the module, or why it cannot be had: asked once per process


def load() -> ModuleType:
    """SGLang's api_types module, downloading the pinned wheel once when it is not cached."""
    if not _LOADED:
        try:
            _LOADED.append(_load())
        except ContractUnavailable as exc:
            _LOADED.append(exc)
    if isinstance(_LOADED[0], ContractUnavailable):
        raise _LOADED[0]
    return _LOADED[0]


def _load() -> ModuleType:
    try:
        import msgspec  # noqa: F401  the module's one dependency
    except ImportError:
        raise ContractUnavailable("SGLang's contract module needs msgspec "
                                  "(pip install msgspec, part of cope[test])") from None
    target = machine_cache("contracts", "COPE_CONTRACTS_DIR") / f"sglang-{SGLANG_VERSION}" / MODULE
    if not target.is_file():
        _download(target)
    spec = importlib.util.spec_from_file_location(f"sglang_{SGLANG_VERSION.replace('.', '_')}"
                                                  "_api_types", target)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec resolves the Structs' annotations through it
    spec.loader.exec_module(module)
    return module
