"""The event loop a run drives its requests on, and the garbage collector around it.

`event_loop=auto` (the default) uses uvloop when it is installed (`pip install cope[fast]`)
and asyncio's own loop otherwise; `asyncio` and `uvloop` choose one. uvloop's loop, written
on libuv, takes less CPU per request than asyncio's, which matters when many requests are
in flight to a fast endpoint.

While a run's loop runs, the objects made before it (modules, configs, the loaded problems)
are frozen out of the garbage collector (gc.freeze): a full collection otherwise walks all of
them, again and again, while the run makes and drops thousands of small objects a second.
They are unfrozen when the loop ends, so a notebook that runs many times collects them as
usual.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from contextlib import contextmanager
from typing import Any, Iterator

from cope.errors import ConfigError

EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(name: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new event loop of the chosen kind."""
    if name not in EVENT_LOOPS:
        raise ConfigError(f"event_loop={name!r}: choose one of {', '.join(EVENT_LOOPS)}.")
    if name == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise ConfigError("event_loop=uvloop, but uvloop is not installed: "
                              "pip install 'cope[fast]', or set event_loop=auto.") from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def loop_name(name: str = "auto") -> str:
    """The loop `name` resolves to here: asyncio or uvloop."""
    return "asyncio" if loop_factory(name) is asyncio.new_event_loop else "uvloop"


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's walks until the end."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run(coroutine: Coroutine[Any, Any, Any], name: str = "auto") -> Any:
    """asyncio.run on the chosen loop, with the heap made before it frozen."""
    with frozen_heap(), asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(coroutine)
