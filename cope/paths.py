"""Where cope keeps assembled models and the generation cache, and where its configs are."""

from __future__ import annotations

import os
from pathlib import Path

# the Hydra config tree: the checkout's conf/, unless COPE_CONFIG_DIR points elsewhere
CONFIG_DIR = Path(os.environ.get("COPE_CONFIG_DIR") or Path(__file__).resolve().parent.parent / "conf")


def cope_home() -> Path:
    """COPE_HOME if set, else $XDG_CACHE_HOME/cope, else ~/.cache/cope."""
    if home := os.environ.get("COPE_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "cope"
