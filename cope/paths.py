"""Where cope keeps assembled models and the generation cache."""

from __future__ import annotations

import os
from pathlib import Path


def cope_home() -> Path:
    """COPE_HOME if set, else $XDG_CACHE_HOME/cope, else ~/.cache/cope."""
    if home := os.environ.get("COPE_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "cope"
