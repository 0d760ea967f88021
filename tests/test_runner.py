"""Runs on the scripted backend: cost accounting from records, run directories, metrics."""

import json

import pytest

from cope.records import RunDirError
from cope.runner import run

PRICED = ["backend.name=scripted", "pair=qwen-coder-cpu", "task.limit=6"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cost_metrics_recompute_from_the_samples(make_config):
    result = run(make_config(*PRICED))
    samples = read_jsonl(result.run_dir / "samples.jsonl")
    problems = read_jsonl(result.run_dir / "problems.jsonl")
    m = result.metrics

    def price(s):  # qwen-coder-1_5b stands in at GPT-4o-mini's price; the 0.5B is free
        if s["model"] == "qwen-coder-1_5b":
            return (s["prompt_tokens"] * 0.15 + s["completion_tokens"] * 0.60) / 1e6
        return 0.0

    total = sum(price(s) for s in samples)
    assert total > 0
    assert m["cost_usd_total"] == pytest.approx(total)
    assert m["cost_usd_per_million"] == pytest.approx(total / 6 * 1e6)
    assert sum(p["cost_usd"] for p in problems) == pytest.approx(total)
    assert m["cost_usd_per_million_by_role"]["large"] == pytest.approx(total / 6 * 1e6)
    assert m["cost_usd_per_million_by_role"]["small"] == 0.0
    by_stage = {}
    for s in samples:
        by_stage[s["stage"]] = by_stage.get(s["stage"], 0.0) + price(s)
    assert m["cost_usd_per_million_by_stage"] == pytest.approx({k: v / 6 * 1e6 for k, v in by_stage.items()})
    assert m["large_calls"] == sum(s["model_role"] == "large" for s in samples)
    assert m["backend_calls"] + m["cache_hits"] == len(samples)
    for s in samples:
        assert s["cost_usd"] == pytest.approx(price(s))
    assert sum(m["resolved_by_stage"].values()) == 6
    assert m["accuracy"] == sum(p["correct"] for p in problems) / 6


def test_a_run_directory_is_never_reused(make_config):
    run(make_config(*PRICED))
    with pytest.raises(RunDirError, match="already holds a run"):
        run(make_config(*PRICED))


def test_problems_are_recorded_in_order_with_concurrency(make_config):
    result = run(make_config(*PRICED, "concurrency=6"))
    rows = read_jsonl(result.run_dir / "problems.jsonl")
    assert [r["index"] for r in rows] == list(range(6))
    assert [r["id"] for r in rows] == [str(i) for i in range(6)]


def test_runs_inside_a_running_event_loop(make_config):
    """As from a notebook cell, where an event loop is already running."""
    import asyncio

    async def cell():
        return run(make_config(*PRICED, "task.limit=2"))

    result = asyncio.run(cell())
    assert result.metrics["n_problems"] == 2 and result.metrics["finished"]
