"""Where cope keeps assembled models and the generation cache, and where its configs are."""

from __future__ import annotations

import os
from pathlib import Path

# the Hydra config tree: the checkout's conf/, unless COPE_CONFIG_DIR points elsewhere
CONFIG_DIR = Path(os.environ.get("COPE_CONFIG_DIR") or Path(__file__).resolve().parent.parent / "conf")


def machine_cache(name: str, variable: str) -> Path:
    """$variable if set, else $XDG_CACHE_HOME/cope/<name>, else ~/.cache/cope/<name>: what one
    machine keeps for every COPE_HOME (contracts, engine venvs)."""
    if path := os.environ.get(variable):
        return Path(path).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cope" / name


def cope_home() -> Path:
    """COPE_HOME if set, else $XDG_CACHE_HOME/cope, else ~/.cache/cope."""
    return machine_cache("", "COPE_HOME")
