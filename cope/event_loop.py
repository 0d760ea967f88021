"""The event loop a run drives its requests on, and the garbage collector around it.

`event_loop=auto` (the default) uses uvloop when it is installed (`pip install cope[fast]`)
and asyncio's own loop otherwise; `asyncio` and `uvloop` choose one. uvloop's loop, written
on libuv, takes less CPU per request than asyncio's, which matters when many requests are
in flight to a fast endpoint.

While a run's loop runs, the garbage collector works less: the objects made before it
(modules, configs, the loaded problems) are frozen out of its walks (gc.freeze), and its
youngest generation is collected after ten times as many allocations (most of a request's
objects are freed by reference counting before then; the cycles among the rest wait a little
longer). Both are undone when the loop ends, so a notebook that runs many times collects as
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


YOUNG_THRESHOLD_FACTOR = 10


@contextmanager
def lighter_gc() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's walks, and collect the
    youngest generation less often, until the end."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(thresholds[0] * YOUNG_THRESHOLD_FACTOR, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def run(coroutine: Coroutine[Any, Any, Any], name: str = "auto") -> Any:
    """asyncio.run on the chosen loop, with the garbage collector lightened (lighter_gc)."""
    with lighter_gc(), asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(coroutine)
