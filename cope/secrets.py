"""Keep API keys out of everything cope writes: configs, records, logs and trackers."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

REDACTED = "***"
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|auth[_-]?token|access[_-]?token|bearer)$",
                         re.IGNORECASE)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


def secret_values() -> list[str]:
    """Values of environment variables whose names say they are secrets."""
    return [value for name, value in os.environ.items()
            if _SECRET_ENV.search(name) and len(value) >= 8]


@lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:
    # records repeat the same few keys: match each once
    return _SECRET_KEY.search(key) is not None


def redact(data: Any, values: list[str] | None = None) -> Any:
    """A copy of `data` with secret-named fields and known secret values replaced."""
    values = secret_values() if values is None else values
    if isinstance(data, dict):
        return {key: (REDACTED if isinstance(key, str) and _secret_name(key) and data[key]
                      else redact(data[key], values))
                for key in data}
    if isinstance(data, list | tuple):
        return type(data)(redact(item, values) for item in data)
    if isinstance(data, str) and values:
        for value in values:
            if value in data:
                data = data.replace(value, REDACTED)
        return data
    return data
