"""Every benchmark runs, in its smallest form, and writes the figures its README row reads.

These check that a benchmark still works against today's code (one that breaks would only
be found when someone needs its numbers); they time nothing. Each writes to a file of the
test's own, never to benchmarks/results/."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, out: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"),
                           "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_http_paths(tmp_path):
    result = run_benchmark("http_paths", tmp_path / "http.json", "--requests", "40",
                           "--repeats", "1", "--loops", "asyncio")
    overhead = result["overhead"]["asyncio"]
    assert overhead["requests"] == 40 and 0 < overhead["median_engine_ratio"]
    assert result["concurrency"]["asyncio"]["median_cope_to_ideal"] >= 1.0


def test_http_paths_against_a_baseline_revision(tmp_path):
    result = run_benchmark("http_paths_against", tmp_path / "against.json", "--rounds", "1",
                           "--repeats", "1", "--requests", "40", "--loop", "asyncio")
    assert len(result["per_round"]["baseline"]) == len(result["per_round"]["current"]) == 1
    assert all(ratio > 0 for ratio in result["current_over_baseline"].values())


def test_sweep_economy(tmp_path):
    result = run_benchmark("sweep_economy", tmp_path / "sweep.json", "--problems", "1")
    assert result["cells"] == len(result["per_cell"]) == 80
    assert result["grid_unique_generations"] <= result["grid_requests"]
    assert all(cell["generations"] > 0 for cell in result["per_cell"])


def test_sandbox_throughput(tmp_path):
    result = run_benchmark("sandbox_throughput", tmp_path / "sandbox.json",
                           "--data", str(SHARED_DATA), "--limit", "4", "--workers", "1")
    assert result["programs"] == 4 and result["plain_s"] > 0


def test_embedded(tmp_path):
    result = run_benchmark("embedded", tmp_path / "embedded.json", "--tokens", "4",
                           "--problems", "2")
    assert result["direct"]["tokens"] > 0 and result["cope_one_at_a_time"]["tokens"] > 0


def test_shared_prefix_batching(tmp_path):
    result = run_benchmark("shared_prefix_batching", tmp_path / "prefix.json",
                           "--model", "smollm2-135m", "--tokens", "4")
    assert result["greedy"]["of"] == 8 and result["sampled"]["batched_tokens"] > 0


def test_cpu_limit(tmp_path):
    result = run_benchmark("cpu_limit", tmp_path / "limit.json", "--batch-sizes", "1", "2",
                           "--steps", "4", "--repeats", "1", "--quickstart-runs", "0")
    for model in result["limit"].values():
        assert set(model["decode_tokens_per_s"]) == {"1", "2"}
        assert model["prompt_tokens_per_s"] > 0


def test_view_load(tmp_path):
    result = run_benchmark("view_load", tmp_path / "view.json", "--copies", "2", "--no-browser")
    large = result["large_run"]
    assert large["runs"] == 1 and large["problems"] == 200
    assert result["gsm8k_reproduction"]["runs"] >= 15
    assert all(v > 0 for v in (large["first_problem_s"], large["parse_everything_s"]))
