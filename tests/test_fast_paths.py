"""The request path's faster parts give the results of the plain ones: JSON through orjson,
cache keys, the event loop and the deferred tie-breaking generator."""

import asyncio
import hashlib
import json
import random

import pytest

from cope import fast_json
from cope.cache import GenerationCache, completion_text
from cope.engine import SeededOnUse
from cope.errors import ConfigError
from cope.event_loop import loop_factory, loop_name, run
from cope.samples import BackendRequest, Completion, SamplingParams, stable_seed

TEXTS = ["plain", "quote \" backslash \\ slash /", "lines\nand\ttabs\r\b\f",
         "".join(chr(c) for c in range(32)) + "\x7f", "é ü ß 中文 😀 \u2028\u2029 \ufeff",
         "$\\boxed{\\frac{1}{2}}$"]


def old_key(request: BackendRequest) -> str:
    """What is asked, hashed as cope did before orjson (the whole key of cache version 1)."""
    payload = {"model": request.model_identity, "messages": [list(m) for m in request.messages],
               "params": request.params.identity(), "sample_index": request.sample_index,
               "logprobs": request.want_logprobs}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (0.8, 0.95), (1e-05, 1.0),
                                               (0.7, 1e-07), (1e16, 0.3), (0.1 + 0.2, 1.0)])
def test_cache_keys_are_the_json_modules(temperature, top_p):
    for text in TEXTS:
        request = BackendRequest("api:m@openai:m", (("system", "Solve."), ("user", text)),
                                 SamplingParams(temperature, 64, top_p=top_p, seed=2**31 - 2,
                                                stop=(text, "\n\n")), 3, want_logprobs=True)
        assert request.content_key() == old_key(request)


def test_canonical_falls_back_where_orjson_would_differ():
    for value in (1e-05, 1e16, 2.5e-300):
        expected = json.dumps({"x": value}, separators=(",", ":"))
        assert fast_json.canonical({"x": value}, [value]) == expected
    huge = {"n": 2**70}  # beyond orjson's integers
    assert fast_json.canonical(huge) == '{"n":1180591620717411303424}'


def test_dumps_and_loads_round_trip_records():
    record = {"text": TEXTS[3] + TEXTS[4], "n": 3, "x": 0.25, "none": None, "ok": True,
              "nested": {"a": [1, 2.5, "b"]}, 7: "int key"}
    data = fast_json.dumps(record)
    assert isinstance(data, bytes) and b"\n" not in data  # one record, one line
    assert fast_json.loads(data) == json.loads(json.dumps(record))
    assert fast_json.loads(b'{"lp": [-Infinity, NaN]}')["lp"][0] == float("-inf")  # json reads it
    with pytest.raises(ValueError):
        fast_json.loads(b'{"truncated": ')


def test_cached_completions_keep_their_logprobs():
    completion = Completion("t", 1, 2, "stop", 0.5, token_logprobs=(-0.1, float("-inf")))
    assert Completion.from_json(fast_json.loads(completion_text(completion))) == completion
    plain = Completion("é \n", 1, 2, "length", 0.125, cached_tokens=4)
    assert Completion.from_json(fast_json.loads(completion_text(plain))) == plain


def test_cache_reads_what_the_json_module_wrote(tmp_path):
    """Completions written as the json module writes them are read back alike."""
    request = BackendRequest("m", (("user", "hi"),), SamplingParams(0.8, 64, seed=1), 0)
    completion = Completion("old", 3, 1, "stop", 0.5)
    cache = GenerationCache(tmp_path / "c.sqlite")
    cache._db.execute("INSERT INTO generations VALUES (?, ?, ?, ?)",
                      (request.cache_key(), "m", json.dumps(completion.to_json()), 0.0))
    assert cache.get(request) == completion
    cache.close()


def test_seeded_on_use_draws_what_random_would():
    lazy, eager = SeededOnUse(("plan-choice", 0, "p1", "s1")), random.Random(
        stable_seed("plan-choice", 0, "p1", "s1"))
    assert [lazy.choice(range(1000)) for _ in range(5)] == [eager.choice(range(1000))
                                                            for _ in range(5)]


def test_event_loops():
    async def which():
        return type(asyncio.get_running_loop()).__module__

    assert run(which(), "asyncio").startswith("asyncio")
    assert loop_name("asyncio") == "asyncio"
    with pytest.raises(ConfigError, match="choose one of auto, asyncio, uvloop"):
        loop_factory("trio")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert loop_name("auto") == "asyncio"
        with pytest.raises(ConfigError, match="pip install"):
            loop_factory("uvloop")
    else:
        assert run(which(), "uvloop").startswith("uvloop")
        assert loop_name("auto") == "uvloop"


def test_the_collector_is_lightened_only_while_the_loop_runs():
    import gc

    async def settings():
        return gc.get_freeze_count(), gc.get_threshold()

    before = gc.get_freeze_count(), gc.get_threshold()
    frozen, thresholds = run(settings(), "asyncio")
    assert frozen > 0 and thresholds[0] == 10 * before[1][0]
    assert (gc.get_freeze_count(), gc.get_threshold()) == before


def test_an_unknown_event_loop_is_refused_before_the_run(make_config):
    from cope.config import validate

    validate(make_config("event_loop=asyncio"))
    with pytest.raises(ConfigError, match="event_loop='trio': choose one of auto, asyncio"):
        validate(make_config("event_loop=trio"))
