"""The models a run uses, ready to generate, and the cache they generate through: built in
one place for the runner, the judge and FrugalGPT's trainer (which runs the runner).

A model with a `server:` section gets its server started first (cope.servers); every model
is bound under the identity its backend gives it and the digest of its settings
(cope.identity); `close()` releases the backends this set created and stops its servers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from omegaconf import OmegaConf

from cope.backends import Backend, create_backend
from cope.cache import GenerationCache
from cope.cache_shared import SharedSegments
from cope.errors import ConfigError
from cope.generator import ModelBinding
from cope.identity import settings_digest
from cope.models.hf_export import export_gguf
from cope.models.packaged import resolve_model_file
from cope.paths import cope_home
from cope.servers import ManagedServer

log = logging.getLogger(__name__)


def open_cache(cfg) -> GenerationCache:
    """The generation cache `cfg.cache` describes."""
    shared = (SharedSegments(cfg.cache.shared_dir, cfg.cache.sync_interval_s)
              if cfg.cache.shared_dir else None)
    return GenerationCache(cfg.cache.path or str(cope_home() / "generations.sqlite"),
                           cfg.cache.mode, shared, reuse_former_keys=cfg.cache.reuse_former_keys)


class ModelSet:
    """`aliases` of `cfg.models` bound to backends; `injected` backends (by name) are used
    instead of new ones. Servers are started only with a `server_logs` directory."""

    def __init__(self, cfg, aliases: Iterable[str], injected: dict[str, Backend] | None = None,
                 server_logs: Path | None = None) -> None:
        self.cfg = cfg
        self.bindings: dict[str, ModelBinding] = {}
        self.serving: dict[str, dict[str, Any]] = {}  # alias -> what its server said
        self.owned: list[Backend] = []  # created here, closed here
        self.servers: list[ManagedServer] = []
        backends: dict[str, Backend] = dict(injected or {})
        try:
            for alias in dict.fromkeys(aliases):
                self._bind(alias, backends, server_logs)
        except BaseException:
            self.close()  # servers already started must not outlive a failed set-up
            raise

    def _bind(self, alias: str, backends: dict[str, Backend], server_logs: Path | None) -> None:
        model_cfg = self.cfg.models[alias]
        managed = None
        if model_cfg.server.kind is not None:
            if server_logs is None:
                raise ConfigError(f"models.{alias}.server: only a run starts servers; start it "
                                  f"yourself and point models.{alias}.base_url at it.")
            model_cfg, managed = self._start_server(alias, model_cfg, server_logs)
        if model_cfg.backend not in backends:
            backends[model_cfg.backend] = create_backend(model_cfg.backend, self.cfg)
            self.owned.append(backends[model_cfg.backend])
        backend = backends[model_cfg.backend]
        identity = None
        # every generation comes from the cache (survey: or is counted as missing)
        if self.cfg.cache.mode in ("readonly", "survey"):
            identity = backend.replay_identity(alias, model_cfg)
        if identity is None:
            identity = backend.add_model(alias, model_cfg)
        self.bindings[alias] = ModelBinding(alias, identity, backend,
                                            settings_digest(self.cfg.models[alias], self.cfg))
        facts = backend.server_facts(identity)
        if facts is not None or managed is not None:
            self.serving[alias] = {**(facts or {}), **(managed.facts() if managed else {})}

    def _start_server(self, alias: str, model_cfg, logs: Path
                      ) -> tuple[SimpleNamespace, ManagedServer]:
        """Start the model's server; its config, pointed at the server, for the backend."""
        spec = model_cfg.server
        identity = model_cfg.identity
        model_path = spec.model_path
        if spec.kind == "llama_cpp" or (spec.kind == "vllm" and not model_path):
            path, sha256 = resolve_model_file(alias, model_cfg)
            if spec.kind == "vllm":  # vLLM reads no GGUF: the weights transformers dequantizes
                path = export_gguf(path, sha256)
            model_path = model_path or str(path)
            identity = f"{identity}@gguf-sha256:{sha256}"
        if not model_path:
            raise ConfigError(f"models.{alias}.server.model_path: which model should it serve?")
        server = ManagedServer(alias, spec.kind, model_path, logs / f"server-{alias}.log",
                               spec.host, spec.port, list(spec.args), spec.startup_timeout_s,
                               deterministic=model_cfg.deterministic, python=spec.python,
                               served_name=model_cfg.api_model or alias)
        self.servers.append(server)
        log.info("Starting %s server for %s: %s", spec.kind, alias, " ".join(server.command()))
        server.start()
        fields = OmegaConf.to_container(model_cfg, resolve=True)
        fields.update(base_url=server.base_url, identity=identity,
                      api_model=model_cfg.api_model or alias)
        return SimpleNamespace(**fields), server

    async def aclose(self) -> None:
        """Release what belongs to the event loop (HTTP sessions), inside that loop."""
        for backend in self.owned:
            await backend.aclose()

    def close(self) -> None:
        for backend in self.owned:
            backend.close()
        self.owned.clear()
        for server in self.servers:
            server.stop()
        self.servers.clear()
