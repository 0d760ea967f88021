"""A real llama.cpp server (llama_cpp.server) on loopback, started and stopped by the run,
serving the tiny packaged model to COPE through backend=openai."""

import json

import httpx
import pytest

from cope.runner import run

pytestmark = pytest.mark.integration

SERVED = ["pair=tiny-cpu", "task.limit=2", "method.votes=2", "method.max_tokens=48",
          "method.plan_max_tokens=24", "method.tau1=1.0", "method.tau2=1.0", "concurrency=2",
          "models.smollm2-135m.backend=openai",
          "models.smollm2-135m.server.kind=llama_cpp",
          "models.smollm2-135m.server.args=[--n_ctx,2048,--n_threads,2]",
          # plain temperature sampling, as the embedded backend does
          "+models.smollm2-135m.extra_body.top_k=0", "+models.smollm2-135m.extra_body.min_p=0.0"]


def test_cope_through_a_managed_llama_cpp_server(make_config):
    result = run(make_config(*SERVED))
    m = result.metrics
    assert m["finished"] and m["resolved_by_stage"] == {"s1": 0, "s2": 0, "s3": 2}
    assert m["backend_calls"] == 2 * (2 * 2 + 1 + 2 + 1)
    log = result.run_dir / "server-smollm2-135m.log"
    assert log.is_file() and log.stat().st_size > 0
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(s["completion_tokens"] > 0 and s["prompt_tokens"] > 0 for s in samples)
    config = (result.run_dir / "config.yaml").read_text()
    assert "kind: llama_cpp" in config
    # the server is gone once the run is over
    port = int(next(line for line in log.read_text().splitlines() if "Uvicorn running" in line
                    ).split(":")[-1].split()[0])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)


def test_a_server_that_cannot_start_reports_its_log(make_config):
    from cope.errors import BackendError

    cfg = make_config(*SERVED, "models.smollm2-135m.server.args=[--no-such-flag]",
                      "models.smollm2-135m.server.startup_timeout_s=60")
    with pytest.raises(BackendError) as info:
        run(cfg)
    assert "exited with code" in str(info.value) and "no-such-flag" in str(info.value)


@pytest.mark.parametrize("stop_signal", ["SIGTERM", "SIGINT"])
def test_the_server_stops_when_the_run_is_stopped(tmp_path, stop_signal):
    """SIGTERM (a scheduler) or SIGINT (Ctrl-C) mid-run: the run stops and so does its server."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    run_dir = tmp_path / "run"
    env = dict(os.environ, COPE_HOME=os.environ["COPE_HOME"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "cope.cli", *SERVED, "task.limit=50", f"run_dir={run_dir}",
         f"cache.path={tmp_path / 'c.sqlite'}", "progress=false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run_dir / "server-smollm2-135m.log"
    samples = run_dir / "samples.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (samples.exists() and samples.stat().st_size > 0):
        time.sleep(0.2)
    assert samples.exists(), proc.stderr.read()[-2000:] if proc.poll() is not None else "no samples"
    port = int(next(line for line in log.read_text().splitlines() if "Uvicorn running" in line
                    ).split(":")[-1].split()[0])
    proc.send_signal(getattr(signal, stop_signal))
    proc.wait(timeout=120)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] is False
