"""Loading the math benchmarks and choosing problems."""

import importlib.util

import pytest

from cope.errors import DataError
from cope.tasks import create_task
from cope.tasks.base import select

from conftest import compose_config


def load(*overrides):
    cfg = compose_config(list(overrides))
    return create_task(cfg.task).load()


def test_gsm8k_is_packaged():
    problems = load("task=gsm8k")
    assert len(problems) == 1319
    assert problems[0].gold == "18" and "Janet" in problems[0].question
    assert all(p.gold and "," not in p.gold for p in problems)


def test_math500_and_aime_from_a_directory(shared_data):
    math = load("task=math500", f"task.source={shared_data}")
    assert len(math) == 500 and math[0].id.startswith("test/")
    assert len({p.id for p in math}) == 500
    aime = load("task=aime2024", f"task.source={shared_data / 'aime2024.jsonl'}")
    assert len(aime) == 30 and aime[0].id.startswith("2024-")


def test_a_malformed_line_names_file_and_line(tmp_path):
    bad = tmp_path / "math500.jsonl"
    bad.write_text('{"problem": "1+1", "answer": "2", "unique_id": "a"}\n{"problem": oops}\n')
    with pytest.raises(DataError) as info:
        load("task=math500", f"task.source={bad}")
    assert f"{bad}:2" in str(info.value)


def test_a_record_missing_a_field_names_it(tmp_path):
    bad = tmp_path / "aime2024.jsonl"
    bad.write_text('{"ID": "x", "Problem": "p"}\n')
    with pytest.raises(DataError) as info:
        load("task=aime2024", f"task.source={tmp_path}")
    assert "'Answer'" in str(info.value) and ":1" in str(info.value)


def test_a_missing_source_names_the_ways_to_provide_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "datasets" else real(name, *a))
    with pytest.raises(DataError) as info:
        load("task=math500", "task.source=null")
    message = str(info.value)
    assert "task.source" in message and "COPE_DATA" in message and "datasets" in message


def test_a_source_that_does_not_exist(tmp_path):
    with pytest.raises(DataError) as info:
        load("task=math500", f"task.source={tmp_path / 'nowhere'}")
    assert "no such file" in str(info.value)


def test_selection_by_ids_offset_and_limit():
    problems = load("task=gsm8k")
    chosen = select(problems, ["5", "2", "9"], offset=1, limit=1)
    assert [p.id for p in chosen] == ["2"] and chosen[0].index == 0
    assert [p.id for p in select(problems, None, offset=10, limit=3)] == ["10", "11", "12"]
    with pytest.raises(DataError, match="empty"):
        select(problems, None, offset=5000, limit=None)
    with pytest.raises(DataError, match="no problems with ids"):
        select(problems, ["nope"], offset=0, limit=None)
