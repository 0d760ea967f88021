"""Backends by name. Factories import their heavy dependencies only when chosen."""

from __future__ import annotations

from cope.backends.base import Backend
from cope.registry import Registry

BACKENDS: Registry = Registry("backend")


@BACKENDS.register("llamacpp")
def _llamacpp(cfg) -> Backend:
    from cope.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(cfg)


@BACKENDS.register("scripted")
def _scripted(cfg) -> Backend:
    from cope.backends.scripted import ScriptedBackend

    return ScriptedBackend()


def create_backend(name: str, cfg) -> Backend:
    return BACKENDS.get(name)(cfg)


__all__ = ["BACKENDS", "Backend", "create_backend"]
