"""COPE end to end through llama.cpp with the tiny packaged model (SmolLM2-135M)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from cope.errors import CacheMissError
from cope.samples import BackendRequest, SamplingParams
from cope.runner import run

from conftest import ROOT

pytestmark = pytest.mark.integration

TINY = [
    "pair=tiny-cpu", "task=gsm8k", "task.limit=2", "method=cope", "method.votes=2",
    "method.max_tokens=48", "method.plan_max_tokens=24", "backend.n_ctx=1024", "concurrency=2",
]
# consensus can never exceed 1.0: every problem goes through all three stages
ALL_STAGES = ["method.tau1=1.0", "method.tau2=1.0"]
SAMPLE_FIELDS = {"problem_id", "stage", "role", "model", "sample_index", "text", "prompt_tokens",
                 "completion_tokens", "latency_s", "cache_hit"}
PROBLEM_FIELDS = {"id", "answer", "gold", "correct", "resolved_stage", "stages", "cost_usd"}
METRIC_FIELDS = {"accuracy", "n_problems", "cost_usd_per_million", "resolved_by_stage",
                 "large_calls", "backend_calls", "cache_hits"}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_calls(problems):
    """Generations a COPE run must have made, from the stages each problem reached."""
    calls = 0
    for row in problems:
        for stage in row["stages"]:
            votes = stage["votes"]
            calls += {"s1": 2 * votes, "s2": 1 + votes, "s3": 1}[stage["stage"]]
    return calls


def test_cope_end_to_end_records_and_cache_replay(make_config, tmp_path):
    cfg = make_config(*TINY, *ALL_STAGES)
    first = run(cfg)
    run_dir = first.run_dir
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "samples.jsonl",
                                                  "problems.jsonl", "metrics.json"}
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["method"]["stages"]["s1"]["votes"] == 2  # resolved, no interpolations
    assert config["method"]["threshold_op"] == "gt"

    samples = read_jsonl(run_dir / "samples.jsonl")
    problems = read_jsonl(run_dir / "problems.jsonl")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert all(SAMPLE_FIELDS <= set(s) for s in samples)
    assert [p["id"] for p in problems] == ["0", "1"]
    assert all(PROBLEM_FIELDS <= set(p) for p in problems)
    assert METRIC_FIELDS <= set(metrics)
    assert len(samples) == expected_calls(problems) == metrics["backend_calls"]
    assert metrics["cache_hits"] == 0
    assert all(s["model"] == "smollm2-135m" and s["completion_tokens"] > 0 for s in samples)
    for p in problems:
        assert p["resolved_stage"] == p["stages"][-1]["stage"]
        assert p["stages"][0]["votes"] == 2
    assert metrics["resolved_by_stage"] == {"s1": 0, "s2": 0, "s3": 2}
    assert len(samples) == 2 * (2 * 2 + 1 + 2 + 1)
    assert metrics["large_calls"] == 2 * 2  # the guideline and the stage-3 execution
    by_stage = {(s["problem_id"], s["stage"], s["role"]) for s in samples}
    assert ("0", "s2", "planner") in by_stage and ("1", "s3", "executor") in by_stage
    assert metrics["accuracy"] == sum(p["correct"] for p in problems) / 2

    # the same config again: every generation comes from the cache
    second = run(make_config(*TINY, *ALL_STAGES, f"run_dir={tmp_path / 'again'}"))
    assert second.metrics["backend_calls"] == 0
    assert second.metrics["cache_hits"] == len(samples)
    assert (second.run_dir / "problems.jsonl").read_bytes() == (run_dir / "problems.jsonl").read_bytes()

    # a readonly replay reproduces the run; one that needs a sample the cache lacks fails
    replay = run(make_config(*TINY, *ALL_STAGES, f"run_dir={tmp_path / 'replay'}",
                             "cache.mode=readonly"))
    assert replay.metrics["backend_calls"] == 0
    assert (replay.run_dir / "problems.jsonl").read_bytes() == (run_dir / "problems.jsonl").read_bytes()
    with pytest.raises(CacheMissError):
        run(make_config(*TINY, *ALL_STAGES, "method.votes=3", f"run_dir={tmp_path / 'more'}",
                        "cache.mode=readonly"))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_seeded_sample_reproduces(make_config, batch_size):
    """One at a time, a seeded sample reproduces whatever ran before it; batched, the same
    batch reproduces."""
    from cope.backends.llamacpp import LlamaCppBackend
    import asyncio

    cfg = make_config(*TINY, f"backend.batch_size={batch_size}")
    backend = LlamaCppBackend(cfg.backend)
    identity = backend.add_model("smollm2-135m", cfg.models["smollm2-135m"])
    assert "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53" in identity
    assert identity.endswith("+batched") == (batch_size > 1)
    messages = (("user", "Name three colours."),)
    other = (("system", "Be brief."), ("user", "Name a fruit."))
    a = BackendRequest(identity, messages, SamplingParams(0.9, 24, seed=11), 0)
    b = BackendRequest(identity, messages, SamplingParams(0.9, 24, seed=12), 1)
    c = BackendRequest(identity, other, SamplingParams(0.0, 24, seed=0), 0)
    first = asyncio.run(backend.generate([a, b, c]))
    again = asyncio.run(backend.generate([a, b, c]))
    backend.close()
    assert [x.text for x in first] == [x.text for x in again]
    assert first[0].text != first[1].text  # different seeds, different samples
    assert all(x.prompt_tokens > 5 and 0 < x.completion_tokens <= 24 for x in first)


def test_cli_prints_summary_and_run_dir_last(tmp_path):
    env = dict(os.environ, COPE_RUNS_DIR=str(tmp_path / "runs"))
    result = subprocess.run(
        [sys.executable, "-m", "cope.cli", *TINY, "task.limit=1", "method.votes=1",
         f"cache.path={tmp_path / 'c.sqlite'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert any(line.strip().startswith("accuracy") for line in lines)
    assert any("per million problems" in line for line in lines)
    run_dir = lines[-1]
    assert os.path.isfile(os.path.join(run_dir, "metrics.json"))
    assert run_dir.startswith(str(tmp_path / "runs"))

