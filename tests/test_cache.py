"""The SQLite generation cache: keys, modes and several processes at once."""

import multiprocessing as mp

import pytest

from cope.cache import GenerationCache
from cope.errors import CacheMissError, ConfigError
from cope.samples import BackendRequest, Completion, SamplingParams


def request(index=0, temperature=0.8, seed=1, model="m", content="hi"):
    return BackendRequest(model, (("user", content),), SamplingParams(temperature, 64, seed=seed), index)


def test_key_covers_model_messages_params_and_index():
    base = request()
    assert base.cache_key() == request().cache_key()
    for other in (request(index=1), request(model="n"), request(content="ho"),
                  request(temperature=0.4), request(seed=2)):
        assert other.cache_key() != base.cache_key()


def test_greedy_samples_ignore_the_seed():
    assert request(temperature=0.0, seed=1).cache_key() == request(temperature=0.0, seed=7).cache_key()


def test_readwrite_roundtrip(tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    assert cache.get(request()) is None
    completion = Completion("text", 3, 1, "stop", 0.5)
    cache.put(request(), completion)
    assert cache.get(request()) == completion
    cache.put(request(), Completion("other", 1, 1))  # the first writer wins
    assert cache.get(request()).text == "text"
    assert cache.count() == 1


def test_readonly_is_pure_replay(tmp_path):
    path = tmp_path / "c.sqlite"
    writer = GenerationCache(path)
    writer.put(request(), Completion("text", 3, 1))
    writer.close()
    replay = GenerationCache(path, "readonly")
    assert replay.get(request()).text == "text"
    with pytest.raises(CacheMissError, match="readonly"):
        replay.get(request(index=5))
    replay.put(request(index=5), Completion("x", 1, 1))  # ignored
    with pytest.raises(CacheMissError):
        replay.get(request(index=5))


def test_readonly_without_a_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        GenerationCache(tmp_path / "missing.sqlite", "readonly")


def test_off_stores_nothing(tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite", "off")
    cache.put(request(), Completion("t", 1, 1))
    assert cache.get(request()) is None
    assert not (tmp_path / "c.sqlite").exists()


def _writer(path, worker, count):
    cache = GenerationCache(path)
    for i in range(count):
        # half the keys are shared by every worker, half are its own
        shared = request(index=i)
        own = request(index=i, model=f"worker{worker}")
        cache.put(shared, Completion(f"shared {i}", 1, 1))
        cache.put(own, Completion(f"own {worker} {i}", 1, 1))
        assert cache.get(shared) is not None
    cache.close()


def test_several_processes_share_one_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    GenerationCache(path).close()
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(str(path), w, 200)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    cache = GenerationCache(path)
    assert cache.count() == 200 + 4 * 200
    assert cache.get(request(index=7, model="worker3")).text == "own 3 7"



def _open_when_released(path, barrier, results):
    barrier.wait()
    try:
        cache = GenerationCache(path)
        cache.put(request(), Completion("t", 1, 1))
        cache.close()
        results.put(None)
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))


def test_processes_that_create_one_cache_at_once_all_open_it(tmp_path):
    """The cells of a parallel sweep open a new cache file at the same moment; SQLite refuses
    a concurrent switch to WAL at once (without its busy timeout), and no cell may fail on it."""
    ctx = mp.get_context("spawn")
    errors = []
    for trial in range(8):
        path = str(tmp_path / f"new{trial}.sqlite")
        barrier, results = ctx.Barrier(3), ctx.Queue()
        workers = [ctx.Process(target=_open_when_released, args=(path, barrier, results))
                   for _ in range(3)]
        for w in workers:
            w.start()
        errors += [e for e in (results.get(timeout=120) for _ in workers) if e]
        for w in workers:
            w.join(timeout=60)
    assert errors == []

def test_many_at_once_in_one_lookup_and_one_transaction(tmp_path):
    cache = GenerationCache(tmp_path / "c.sqlite")
    requests = [request(index=i) for i in range(5)]
    keys = [r.cache_key() for r in requests]
    cache.put_many([(keys[i], requests[i], Completion(f"t{i}", 1, 1)) for i in (0, 2, 4)])
    found = cache.get_many(requests, keys)
    assert [c.text if c else None for c in found] == ["t0", None, "t2", None, "t4"]
    cache.close()


def test_queued_completions_are_committed_at_the_next_loop_turn(tmp_path):
    """put_soon groups what finishes in one turn into one commit; until then the queue
    answers lookups, and committed() returns once it is durable for other processes."""
    import asyncio

    path = tmp_path / "c.sqlite"
    cache = GenerationCache(path)
    other = GenerationCache(path)  # another connection, as another process would have

    async def scenario():
        for i in range(3):
            cache.put_soon(request(index=i).cache_key(), request(index=i), Completion(f"t{i}", 1, 1))
        assert cache.get(request(index=1)).text == "t1"  # served from the queue
        assert other.count() == 0  # not committed yet
        await cache.committed()
        assert other.count() == 3

    asyncio.run(scenario())
    cache.put_soon(request(index=9).cache_key(), request(index=9), Completion("t9", 1, 1))
    assert other.get(request(index=9)).text == "t9"  # outside a loop: stored at once
    cache.close()
    other.close()


def test_close_commits_what_is_queued(tmp_path):
    import asyncio

    path = tmp_path / "c.sqlite"
    cache = GenerationCache(path)

    async def queue_and_stop():
        cache.put_soon(request().cache_key(), request(), Completion("kept", 1, 1))
        cache.close()  # a run stopping before the next turn

    asyncio.run(queue_and_stop())
    assert GenerationCache(path).get(request()).text == "kept"


def test_a_write_in_flight_is_waited_for_and_later_completions_join_the_next(tmp_path):
    """The writer thread commits one batch while the loop queues the next; committed() waits
    for the batch holding everything queued before it, and lookups see both meanwhile."""
    import asyncio

    path = tmp_path / "c.sqlite"
    cache = GenerationCache(path)
    other = GenerationCache(path)

    async def scenario():
        cache.put_soon(request(index=0).cache_key(), request(index=0), Completion("t0", 1, 1))
        await asyncio.sleep(0)  # the first batch goes to the writer thread
        for i in (1, 2):
            completion = Completion(f"t{i}", 1, 1)
            cache.put_soon(request(index=i).cache_key(), request(index=i), completion)
        assert [cache.get(request(index=i)).text for i in range(3)] == ["t0", "t1", "t2"]
        await cache.committed()
        assert other.count() == 3

    asyncio.run(scenario())
    cache.close()
    other.close()


def test_a_failed_write_keeps_its_completions_for_the_next_try(tmp_path):
    import asyncio

    path = tmp_path / "c.sqlite"
    cache = GenerationCache(path)
    blocker = GenerationCache(path)
    blocker._db.execute("PRAGMA busy_timeout = 0")

    async def scenario():
        cache.put_soon(request().cache_key(), request(), Completion("kept", 1, 1))
        await asyncio.sleep(0)
        cache._writer._inflight.result()  # let the first write finish
        await asyncio.sleep(0)
        # another process holds the write lock and the writer gives up at once
        blocker._db.execute("BEGIN IMMEDIATE")
        cache._writer._write_db.execute("PRAGMA busy_timeout = 0")
        cache.put_soon(request(index=1).cache_key(), request(index=1), Completion("t1", 1, 1))
        with pytest.raises(Exception, match="locked"):
            await cache.committed()
        assert cache.get(request(index=1)).text == "t1"  # still served, still queued
        blocker._db.execute("ROLLBACK")
        await cache.committed()

    asyncio.run(scenario())
    assert blocker.get(request(index=1)).text == "t1"
    cache.close()
    blocker.close()


def test_lookups_of_one_turn_share_a_query_and_each_gets_its_own_answer(tmp_path, monkeypatch):
    import asyncio

    path = tmp_path / "c.sqlite"
    writer = GenerationCache(path)
    writer.put(request(index=1), Completion("one", 1, 1))
    writer.close()
    cache = GenerationCache(path, mode="readonly")
    queries = []
    select = cache._select
    monkeypatch.setattr(cache, "_select", lambda keys: queries.append(keys) or select(keys))

    async def ask(*indices):
        requests = [request(index=i) for i in indices]
        return await cache.lookup(requests, [r.cache_key() for r in requests])

    async def scenario():
        return await asyncio.gather(ask(1), ask(1, 1), ask(2), return_exceptions=True)

    first, second, missing = asyncio.run(scenario())
    assert [c.text for c in first] == ["one"] and [c.text for c in second] == ["one", "one"]
    assert isinstance(missing, CacheMissError)  # only the lookup that missed fails
    assert len(queries) == 1
    cache.close()
