"""JSON for the request path: orjson when it is installed (`pip install cope[fast]`), the
standard library otherwise, with the same text either way wherever it matters.

Every request encodes its body, decodes the answer, stores the completion and appends two
records; orjson does each about ten times faster than the json module.

- `dumps`: compact UTF-8 bytes. orjson writes NaN and infinities as null (the json module
  writes NaN and Infinity, which are not JSON); callers that must keep them use json.
- `loads`: anything the json module reads (orjson refuses NaN and Infinity: such text goes
  to json).
- `canonical`: the text of json.dumps(obj, sort_keys=True, ensure_ascii=False,
  separators=(",", ":")), byte for byte: cache keys are hashes of it. orjson writes strings,
  integers and most floats the same way; it writes exponents differently (1e-05 is
  0.00001), so the caller names the floats in obj and any written with an exponent, or not
  finite, sends the object to json.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

try:
    import orjson
except ImportError:  # the json module does it all
    orjson = None


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    if orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # a type orjson does not know, an integer beyond 64 bits
            pass
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(data: bytes | str) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # perhaps NaN or Infinity, which json reads
            pass
    return json.loads(data)


def _plain(x: float) -> bool:
    """Written the same by orjson and json: finite and without an exponent."""
    text = float.__repr__(x)
    return "e" not in text and "n" not in text  # 1e-05, inf, nan


def canonical(obj: Any, floats: Iterable[float] = ()) -> str:
    """Sorted-key compact JSON text, identical to the json module's (see above); `floats`
    are all the floats obj holds."""
    if orjson is not None and all(_plain(float(x)) for x in floats):
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode("utf-8")
        except TypeError:
            pass
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
