"""Every finished committed GSM8K cell replays from its generation archive into the records
it committed: python -m cope.replay, the cache read only, no model loaded, no backend call.

Records gained fields after some cells were written (a problem's failed and truncated sample
counts, a stage's sandbox layers); a replay writes them, and they are the only difference
allowed. A FrugalGPT stage's confidence is its scorer's probability, which the sentence
encoder computes in float32: it is compared to 1e-6, its decision exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cope.cache_archive import import_archive
from cope.replay import main as replay_main

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results" / "gsm8k-cpu"
ADDED_SINCE = {"problem": {"failed_samples", "truncated_samples"}, "stage": {"sandbox"}}
SCORER_TOLERANCE = 1e-6


def finished_cells() -> tuple[list[str], list[str]]:
    finished, unfinished = [], []
    for records in sorted(RESULTS.glob("*/problems.jsonl")):
        limit = yaml.safe_load((records.parent / "config.yaml").read_text())["task"]["limit"]
        rows = len(records.read_text().splitlines())
        (finished if rows == limit else unfinished).append(records.parent.name)
    return finished, unfinished


FINISHED, UNFINISHED = finished_cells()


def test_the_cope_and_large_cells_are_replayed():
    assert {"cope", "large"} <= set(FINISHED)
    # a cell still running holds only some of its problems: its archive lacks the rest
    print(f"not replayed (unfinished): {', '.join(UNFINISHED) or 'none'}")


def _same(committed, replayed, level: str, scored: bool) -> list[str]:
    """Where a replayed record differs from a committed one beyond what the module
    docstring allows."""
    problems = []
    for key in sorted(set(committed) | set(replayed)):
        if key not in committed:
            if key not in ADDED_SINCE[level]:
                problems.append(f"new field {key}")
            continue
        old, new = committed[key], replayed.get(key)
        if key == "stages":
            for a, b in zip(old, new, strict=True):
                problems += _same(a, b, "stage", scored or a.get("confidence_rule") == "scorer")
        elif key == "consensus" and scored:
            if abs(old - new) > SCORER_TOLERANCE:
                problems.append(f"{key}: {old} != {new}")
        elif old != new:
            problems.append(f"{key}: {str(old)[:80]} != {str(new)[:80]}")
    return problems


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The cells' archive as a cache, imported once (python -m cope.replay --archive does the
    same for one cell)."""
    path = tmp_path_factory.mktemp("replay") / "generations.sqlite"
    import_archive(RESULTS / "generations.jsonl.gz", path)
    return path


def test_a_replay_from_the_archive_itself(tmp_path, capsys):
    assert replay_main([str(RESULTS / "large"), "--archive",
                        str(RESULTS / "generations.jsonl.gz"), "--out", str(tmp_path)]) == 0
    assert "replayed 100 problems" in capsys.readouterr().out


@pytest.mark.parametrize("cell", FINISHED)
def test_a_committed_cell_replays_into_its_records(cell, cache, tmp_path, capsys):
    out = tmp_path / cell
    code = replay_main([str(RESULTS / cell), "--cache", str(cache), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    committed = (RESULTS / cell / "problems.jsonl").read_text()
    replayed = (out / "problems.jsonl").read_text()
    if replayed == committed:
        return
    old_rows = [json.loads(line) for line in committed.splitlines()]
    new_rows = [json.loads(line) for line in replayed.splitlines()]
    assert len(new_rows) == len(old_rows)
    differences = {row["id"]: found for row, new in zip(old_rows, new_rows)
                   if (found := _same(row, new, "problem", False))}
    assert differences == {}
