"""Generation caches carried as archives (python -m cope.cache_archive)."""

import gzip
import json

import pytest

from cope.cache import GenerationCache
from cope.cache_archive import export_archive, import_archive, main
from cope.errors import ConfigError
from cope.runner import run
from cope.samples import BackendRequest, Completion, SamplingParams


def request(i, model="llama:m"):
    return BackendRequest(model, (("user", f"question {i}"),), SamplingParams(0.8, 32, seed=i), i)


def filled_cache(path, count=5):
    cache = GenerationCache(path)
    cache.put_many([(request(i).cache_key(), request(i), Completion(f"answer {i}", 7, i + 1, "stop", 0.25))
                    for i in range(count)])
    cache.put(request(99, model="llama:other"), Completion("other model", 3, 2, "length",
                                                          token_logprobs=(-0.5, float("-inf"))))
    return cache


def test_an_archive_rebuilds_the_cache_it_came_from(tmp_path):
    source = filled_cache(tmp_path / "source.sqlite")  # left open: export reads beside a writer
    assert export_archive(tmp_path / "source.sqlite", tmp_path / "a.jsonl.gz") == 6
    assert import_archive(tmp_path / "a.jsonl.gz", tmp_path / "rebuilt.sqlite") == (6, 6)
    rebuilt = GenerationCache(tmp_path / "rebuilt.sqlite", "readonly")
    for i in range(5):
        assert rebuilt.get(request(i)) == source.get(request(i))
    logprobs = rebuilt.get(request(99, model="llama:other")).token_logprobs
    assert logprobs[0] == -0.5 and logprobs[1] == float("-inf")
    assert import_archive(tmp_path / "a.jsonl.gz", tmp_path / "rebuilt.sqlite") == (6, 0)


def test_the_same_generations_give_the_same_bytes(tmp_path):
    filled_cache(tmp_path / "c.sqlite").close()
    export_archive(tmp_path / "c.sqlite", tmp_path / "a.jsonl.gz")
    import_archive(tmp_path / "a.jsonl.gz", tmp_path / "copy.sqlite")
    export_archive(tmp_path / "copy.sqlite", tmp_path / "b.jsonl.gz")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    keys = [json.loads(line)["key"] for line in gzip.open(tmp_path / "a.jsonl.gz", "rt")]
    assert keys == sorted(keys)


def test_export_can_keep_only_some_models(tmp_path):
    filled_cache(tmp_path / "c.sqlite").close()
    assert export_archive(tmp_path / "c.sqlite", tmp_path / "a.jsonl.gz", ["llama:other"]) == 1
    assert import_archive(tmp_path / "a.jsonl.gz", tmp_path / "only.sqlite") == (1, 1)
    only = GenerationCache(tmp_path / "only.sqlite")
    assert only.get(request(0)) is None
    assert only.get(request(99, model="llama:other")).text == "other model"


def test_a_damaged_archive_names_its_line_and_imports_nothing(tmp_path):
    filled_cache(tmp_path / "c.sqlite").close()
    export_archive(tmp_path / "c.sqlite", tmp_path / "a.jsonl.gz")
    lines = gzip.open(tmp_path / "a.jsonl.gz", "rt").read().splitlines()
    broken = json.loads(lines[2])
    del broken["completion"]["text"]
    lines[2] = json.dumps(broken)
    with gzip.open(tmp_path / "bad.jsonl.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="line 3"):
        import_archive(tmp_path / "bad.jsonl.gz", tmp_path / "target.sqlite")
    assert not (tmp_path / "target.sqlite").exists()

    whole = (tmp_path / "a.jsonl.gz").read_bytes()
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ConfigError, match="not a complete gzip archive"):
        import_archive(tmp_path / "cut.jsonl.gz", tmp_path / "target.sqlite")


def test_the_command_line_reports_errors_plainly(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.sqlite"), str(tmp_path / "a.jsonl.gz")]) == 2
    assert "No generation cache" in capsys.readouterr().err
    filled_cache(tmp_path / "c.sqlite").close()
    assert main(["export", str(tmp_path / "c.sqlite"), str(tmp_path / "a.jsonl.gz")]) == 0
    assert main(["import", str(tmp_path / "a.jsonl.gz"), str(tmp_path / "d.sqlite")]) == 0
    assert "imported 6 new generations of 6" in capsys.readouterr().out


def test_a_run_replays_exactly_from_an_archive_of_its_cache(make_config, tmp_path):
    args = ["backend.name=scripted", "task.limit=3", "method.votes=3"]
    first = run(make_config(*args, f"cache.path={tmp_path / 'm1.sqlite'}", f"run_dir={tmp_path / 'r1'}"))
    export_archive(tmp_path / "m1.sqlite", tmp_path / "run.jsonl.gz")
    import_archive(tmp_path / "run.jsonl.gz", tmp_path / "m2.sqlite")
    replay = run(make_config(*args, "cache.mode=readonly", f"cache.path={tmp_path / 'm2.sqlite'}",
                             f"run_dir={tmp_path / 'r2'}"))
    assert first.metrics["backend_calls"] > 0 and replay.metrics["backend_calls"] == 0
    assert (tmp_path / "r1" / "problems.jsonl").read_bytes() == (tmp_path / "r2" / "problems.jsonl").read_bytes()
