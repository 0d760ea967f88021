"""Keep API keys out of everything cope writes: configs, records, logs and trackers."""

from __future__ import annotations

import json
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


# a secret-named field as it appears in JSON text: the name's end, its closing quote, a colon
_SECRET_FIELD_JSON = re.compile(_SECRET_KEY.pattern.removesuffix("$") + r'"\s*:', re.IGNORECASE)


def json_may_hold_secrets(text: str, values: list[str]) -> bool:
    """Whether JSON text may hold a secret-named field or a secret value: a cheap test, so
    that redact() walks only the records that may need it. Never a false "no"."""
    lowered = text.lower()
    # substring tests first (fast); the regex only when a secret-like name ending is there
    if any(end in lowered for end in _NAME_ENDINGS) and _SECRET_FIELD_JSON.search(text):
        return True
    return any(value in text or _escaped_in_json(value) for value in values)


_NAME_ENDINGS = ('key"', 'secret"', 'password"', 'passwd"', 'token"', 'bearer"')


@lru_cache(maxsize=256)
def _escaped_in_json(value: str) -> bool:
    # a value JSON would escape cannot be searched for as is: assume it may be there
    return json.dumps(value, ensure_ascii=False)[1:-1] != value


@lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:
    # records repeat the same few keys: match each once
    return _SECRET_KEY.search(key) is not None


def redact(data: Any, values: list[str] | None = None) -> Any:
    """A copy of `data` with secret-named fields and known secret values replaced."""
    return _redact(data, secret_values() if values is None else values)


def _redact(data: Any, values: list[str]) -> Any:
    kind = type(data)  # exact types first: records are mostly plain leaves
    if kind is str:
        for value in values:
            if value in data:
                data = data.replace(value, REDACTED)
        return data
    if kind in (int, float, bool) or data is None:
        return data
    if isinstance(data, dict):
        return {key: (REDACTED if isinstance(key, str) and _secret_name(key) and data[key]
                      else _redact(data[key], values))
                for key in data}
    if isinstance(data, list | tuple):
        return type(data)(_redact(item, values) for item in data)
    if isinstance(data, str):
        return _redact(str(data), values) if values else data
    return data
