"""Generations shared between machines through a directory (cache.shared_dir)."""

import json

import pytest

from cope.cache import GenerationCache
from cope.cache_shared import SharedSegments, duplicate_work, main
from cope.errors import ConfigError
from cope.runner import run
from cope.samples import BackendRequest, Completion, SamplingParams


def request(i):
    return BackendRequest("llama:m", (("user", f"question {i}"),), SamplingParams(0.8, 32, seed=i), i)


def machine(tmp_path, name, **kwargs):
    """A process on one machine: a local SQLite file and the shared directory."""
    return GenerationCache(tmp_path / name / "local.sqlite",
                           shared=SharedSegments(tmp_path / "shared", **kwargs))


def test_a_generation_made_on_one_machine_reaches_another(tmp_path):
    a = machine(tmp_path, "a", sync_interval_s=0.0)
    b = machine(tmp_path, "b", sync_interval_s=0.0)
    a.put(request(1), Completion("forty-two", 5, 3))
    assert a.get(request(1)).text == "forty-two"
    assert b.get(request(1)).text == "forty-two" and b.imported == 1
    assert b.get(request(2)) is None  # a real miss stays a miss


def test_a_line_still_being_written_is_read_later_and_damaged_lines_are_skipped(tmp_path):
    b = machine(tmp_path, "b", sync_interval_s=0.0)
    segment = tmp_path / "shared" / "other-1-1.jsonl"
    line = json.dumps({"key": request(3).cache_key(), "model": "llama:m",
                       "completion": Completion("seven", 4, 1).to_json()})
    segment.write_text("not json\n" + line[:20])
    assert b.get(request(3)) is None
    segment.write_text("not json\n" + line + "\n")
    assert b.get(request(3)).text == "seven"


def test_generations_two_machines_both_made_are_counted_as_duplicate_work(tmp_path, capsys):
    a = machine(tmp_path, "a", sync_interval_s=3600)
    b = machine(tmp_path, "b", sync_interval_s=3600)
    a.put(request(1), Completion("one", 3, 1))
    b.put(request(1), Completion("one", 3, 1))  # asked at the same moment: made twice
    b.put(request(2), Completion("two", 3, 1))
    assert duplicate_work(tmp_path / "shared") == {"processes": 2, "generated": 3, "unique": 2,
                                                   "duplicates": 1}
    assert main([str(tmp_path / "shared")]) == 0
    assert "3 generations by 2 processes: 2 unique, 1 made again (33.3% of the work)" in \
        capsys.readouterr().out
    assert main([str(tmp_path / "nowhere")]) == 2


def test_misses_look_for_new_lines_at_most_every_interval(tmp_path):
    a = machine(tmp_path, "a")
    b = machine(tmp_path, "b", sync_interval_s=3600)
    assert b.get(request(5)) is None  # the first miss looks at the shared directory
    a.put(request(4), Completion("x", 1, 1))
    assert b.get(request(4)) is None  # not again within the hour
    assert b.import_entries(b.shared.collect()) == 1 and b.get(request(4)).text == "x"


def test_shared_dir_needs_a_writable_local_cache(tmp_path):
    GenerationCache(tmp_path / "ro.sqlite").close()
    with pytest.raises(ConfigError, match="readwrite"):
        GenerationCache(tmp_path / "ro.sqlite", "readonly", SharedSegments(tmp_path / "shared"))


def test_a_run_on_a_second_machine_pays_for_nothing_the_first_made(make_config, tmp_path):
    args = ["backend.name=scripted", "task.limit=3", "method.votes=3", f"cache.shared_dir={tmp_path / 'shared'}"]
    first = run(make_config(*args, f"cache.path={tmp_path / 'm1.sqlite'}", f"run_dir={tmp_path / 'r1'}"))
    second = run(make_config(*args, f"cache.path={tmp_path / 'm2.sqlite'}", f"run_dir={tmp_path / 'r2'}"))
    assert first.metrics["backend_calls"] > 0
    assert second.metrics["backend_calls"] == 0
    assert second.metrics["cache_hits"] == first.metrics["backend_calls"]
    assert (tmp_path / "r1" / "problems.jsonl").read_bytes() == (tmp_path / "r2" / "problems.jsonl").read_bytes()
