"""Packaged GGUF models and the resolution of model aliases."""

from cope.models.packaged import PACKAGED_MODELS, ensure_packaged_model

__all__ = ["PACKAGED_MODELS", "ensure_packaged_model"]
