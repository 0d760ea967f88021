"""Backends by name. Factories import their heavy dependencies only when chosen."""

from __future__ import annotations

from cope.backends.base import Backend
from cope.registry import Registry

BACKENDS: Registry = Registry("backend")


# each factory takes the whole run config and picks its own section of it

@BACKENDS.register("llamacpp")
def _llamacpp(cfg) -> Backend:
    from cope.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(cfg.backend)


@BACKENDS.register("openai")
def _openai(cfg) -> Backend:
    from cope.backends.openai_compat import OpenAIBackend

    return OpenAIBackend(cfg.http)


@BACKENDS.register("sglang")
def _sglang(cfg) -> Backend:
    from cope.backends.sglang_native import SGLangBackend

    return SGLangBackend(cfg.http)


@BACKENDS.register("transformers")
def _transformers(cfg) -> Backend:
    from cope.backends.transformers_hf import TransformersBackend

    return TransformersBackend(cfg.transformers)


@BACKENDS.register("scripted")
def _scripted(cfg) -> Backend:
    from cope.backends.scripted import ScriptedBackend

    return ScriptedBackend()


def create_backend(name: str, cfg) -> Backend:
    return BACKENDS.get(name)(cfg)


__all__ = ["BACKENDS", "Backend", "create_backend"]
