"""backend=openai against the local stub server: wire format, retries, faults, keys."""

import json

import pytest

from cope.errors import ConfigError
from cope.runner import run
from cope.testing import StubServer


def stub_run(make_config, stub, *extra):
    """COPE with the large role played by an API model whose endpoint is the stub."""
    cfg = make_config("task.limit=4", "pair.roles.large=gpt-4o-mini", "method.votes=3",
                      "http.retry_base_s=0.01", "http.retry_max_s=0.05", "http.timeout_s=1",
                      "backend.name=scripted", *extra)
    cfg.models["gpt-4o-mini"].base_url = stub.base_url
    return run(cfg)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0123456789")


def test_the_large_model_through_an_openai_endpoint(make_config):
    with StubServer() as stub:
        result = stub_run(make_config, stub)
    m = result.metrics
    assert m["finished"] and m["large_calls"] > 0
    assert stub.counts["requests"] == m["large_calls"]  # only the large model is remote
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    large = [s for s in samples if s["model"] == "gpt-4o-mini"]
    assert large and all("boxed" in s["text"] and s["prompt_tokens"] > 0 for s in large)
    assert m["cost_usd_total"] > 0


def test_faults_are_retried_and_change_nothing(make_config, tmp_path):
    with StubServer() as clean:
        reference = stub_run(make_config, clean, f"run_dir={tmp_path / 'clean'}",
                             f"cache.path={tmp_path / 'clean.sqlite'}")
    with StubServer(fault_rate=0.5, stall_s=2.0, seed=3) as faulty:
        result = stub_run(make_config, faulty, f"run_dir={tmp_path / 'faulty'}",
                          f"cache.path={tmp_path / 'faulty.sqlite'}", "http.max_retries=12")
    assert sum(faulty.counts[f] for f in ("429", "500", "stall", "truncate")) > 0
    assert (result.run_dir / "problems.jsonl").read_bytes() == (reference.run_dir / "problems.jsonl").read_bytes()


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_retries_are_bounded_and_a_dead_endpoint_stops_the_run_cleanly(make_config, tmp_path):
    with StubServer(fault_rate=1.0, faults=("500",)) as stub:
        result = stub_run(make_config, stub, "http.max_retries=2", "task.limit=3",
                          "faults.max_consecutive_failures=2", f"run_dir={tmp_path / 'run'}")
    m = result.metrics
    assert not m["finished"] and m["stopped_reason"].startswith("backend")
    assert stub.base_url in m["stopped_reason"] and "HTTP 500" in m["stopped_reason"]
    assert stub.counts["requests"] == 2 * 3  # two requests, each tried max_retries + 1 times
    failed = [s for s in read_jsonl(result.run_dir / "samples.jsonl") if s["model"] == "gpt-4o-mini"]
    assert len(failed) == 2 and all(s["finish_reason"].startswith("error") for s in failed)
    assert (result.run_dir / "metrics.json").exists()


def test_a_sample_that_fails_for_good_abstains_and_resume_solves_it_again(make_config, tmp_path):
    with StubServer() as clean:
        reference = stub_run(make_config, clean, f"run_dir={tmp_path / 'reference'}",
                             f"cache.path={tmp_path / 'reference.sqlite'}")
    args = (f"run_dir={tmp_path / 'run'}", f"cache.path={tmp_path / 'run.sqlite'}",
            "http.max_retries=1")
    with StubServer(fault_rate=1.0, faults=("500",)) as dead:
        broken = stub_run(make_config, dead, *args)
    m = broken.metrics
    assert m["finished"] and m["failed_samples"] == m["large_calls"] > 0
    rows = read_jsonl(broken.run_dir / "problems.jsonl")
    assert sum(row["failed_samples"] for row in rows) == m["failed_samples"]
    with StubServer() as healed:
        resumed = stub_run(make_config, healed, *args, "resume=true")
    assert resumed.metrics["failed_samples"] == 0
    # every large call failed, so the problems that made one are solved again: the endpoint
    # receives the reference's large calls, and the small model's samples come from the cache
    assert healed.counts["requests"] == reference.metrics["large_calls"]
    assert resumed.metrics["n_resumed"] == 4 - len([r for r in rows if r["failed_samples"]])
    assert ((resumed.run_dir / "problems.jsonl").read_bytes()
            == (reference.run_dir / "problems.jsonl").read_bytes())


def test_a_context_length_error_is_recorded_not_retried(make_config):
    with StubServer(fault_rate=1.0, faults=("context_length",)) as stub:
        result = stub_run(make_config, stub, "http.max_retries=5")
    m = result.metrics
    assert m["finished"] and m["large_calls"] == stub.counts["requests"] > 0
    large = [s for s in read_jsonl(result.run_dir / "samples.jsonl") if s["model"] == "gpt-4o-mini"]
    assert all("HTTP 400" in s["finish_reason"] and "context length" in s["finish_reason"]
               for s in large)


def test_a_missing_key_fails_before_any_request(make_config, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with StubServer() as stub:
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            stub_run(make_config, stub)
    assert stub.counts["requests"] == 0


def test_an_unreachable_endpoint_fails_before_any_generation(make_config):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = make_config("task.limit=1", "pair.roles.large=gpt-4o-mini", "backend.name=scripted")
    cfg.models["gpt-4o-mini"].base_url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ConfigError, match="cannot reach"):
        run(cfg)
    assert not (cfg.run_dir and __import__("pathlib").Path(cfg.run_dir, "samples.jsonl").exists())


def test_a_planted_key_reaches_the_endpoint_and_no_output_file(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    key = "sk-planted-4f9c2e7a1b3d5f6e8a0c"
    env = dict(os.environ, OPENAI_API_KEY=key, COPE_RUNS_DIR=str(tmp_path / "runs"),
               COPE_HOME=str(tmp_path / "home"))
    with StubServer() as stub:
        out = subprocess.run(
            [sys.executable, "-m", "cope.cli", "task.limit=2", "backend.name=scripted",
             "pair.roles.large=gpt-4o-mini", f"models.gpt-4o-mini.base_url={stub.base_url}",
             "method.votes=2", "method.tau1=1.0", "method.tau2=1.0", "progress=false"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert stub.authorizations == {f"Bearer {key}"}
    assert key not in out.stdout and key not in out.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "samples.jsonl" for p in files) and any(p.suffix == ".sqlite" for p in files)
    for path in files:
        assert key.encode() not in path.read_bytes(), path


def test_a_role_given_to_another_model_is_named_in_metrics_summary_and_tables(make_config):
    from cope.results.runs import load_run
    from cope.runner import summary

    with StubServer() as stub:
        result = stub_run(make_config, stub)
    m = result.metrics
    assert m["pair"] == "qwen-coder-cpu[large=gpt-4o-mini]"
    assert m["roles"] == {"small": "qwen-coder-0_5b", "large": "gpt-4o-mini"}
    text = summary(result)
    assert "(qwen-coder-cpu[large=gpt-4o-mini])" in text and "large gpt-4o-mini" in text
    # a table never sets this run beside the default pair's runs
    assert load_run(result.run_dir)["cell"]["pair"] == "qwen-coder-cpu[large=gpt-4o-mini]"
