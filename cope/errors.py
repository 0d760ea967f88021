"""Errors a researcher can act on: each names what is wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CopeError(Exception):
    """Base class for errors that cope reports without a traceback on the command line."""


class ConfigError(CopeError):
    """The configuration cannot run; raised before any generation."""


class DataError(CopeError):
    """A data source is missing or malformed."""


class ModelFileError(CopeError):
    """A packaged model is missing or corrupt."""


class BackendError(CopeError):
    """A backend failed in a way that retrying will not fix."""


class RequestFailed(BackendError):
    """One request failed for good (retries exhausted, rejected as too long); it is recorded
    as a failed sample and the run goes on."""


class BackendUnavailable(BackendError):
    """Too many requests in a row failed: the endpoint looks down, so the run stops cleanly
    (resume=true continues it) instead of scoring a dead endpoint as wrong answers."""


class CacheMissError(CopeError):
    """A readonly (replay) cache was asked for a generation it does not hold."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> str:
    """'unknown task 'gsm8': did you mean 'gsm8k'? valid: ...'"""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Unknown {kind} '{name}'.{hint} Valid {kind}s: {', '.join(valid)}."
