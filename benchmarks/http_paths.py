"""HTTP request paths against a local OpenAI-compatible stub (in its own process).

- overhead: a whole cope run (runner, engine, cache, records, backend=openai) of the large
  model alone on N GSM8K problems, against a bare asyncio loop (aiohttp) sending the same N
  requests, both with 64 in flight, the stub answering at once. Goal: cope >= 0.8 of the bare
  loop's requests per second.
- concurrency: 2000 requests through cope's generator and backend at concurrency 64, the stub
  taking 50 ms each. Goal: at most 1.25 x the ideal 2000 x 0.05 / 64 seconds.

    python benchmarks/http_paths.py [--requests 1000]

Writes benchmarks/results/http_paths.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's cope, whichever is installed

import httpx  # noqa: E402
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cope.backends.openai_compat import OpenAIBackend
from cope.cache import GenerationCache
from cope.config import register_configs
from cope.generation import GenerationRequest, SampleTag, SamplingParams
from cope.generator import Generator, ModelBinding
from cope.runner import Run
from cope.servers import free_port

RESULTS = Path(__file__).parent / "results" / "http_paths.json"


class StubProcess:
    def __init__(self, latency: float) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cope.testing.stub_server", "--port", str(self.port),
             "--latency", str(latency)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        for _ in range(200):
            try:
                httpx.get(f"{self.base_url}/models", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("stub did not start")

    def cpu_s(self) -> float:
        """CPU seconds the stub process has used so far (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def compose_run_config(base_url: str, n: int, workdir: Path):
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "method=large", "pair.roles.large=gpt-4o-mini", f"task.limit={n}", "concurrency=64",
            "http.concurrency=64", "progress=false", f"run_dir={workdir / 'run'}",
            f"cache.path={workdir / 'cache.sqlite'}", "backend.name=scripted"])
    cfg.models["gpt-4o-mini"].base_url = base_url
    cfg.models["gpt-4o-mini"].api_key_env = None  # the stub needs no key
    return cfg


def cope_run(base_url: str, n: int, workdir: Path) -> tuple[float, float, float]:
    """(set-up seconds, request-path seconds, request-path CPU seconds) of one run with an
    empty cache."""
    cfg = compose_run_config(base_url, n, workdir)
    start = time.perf_counter()
    session = Run(cfg)  # validate, load problems, check the endpoint, open cache and records
    ready, cpu = time.perf_counter(), time.process_time()
    result = session.execute()  # every request: engine, generator, cache, backend, records
    done, cpu = time.perf_counter(), time.process_time() - cpu
    samples = (workdir / "run" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == n and result.metrics["backend_calls"] == n, result.metrics
    return ready - start, done - ready, cpu


def payloads_of(n: int) -> list[dict]:
    """The bodies cope sends for the run's requests."""
    from cope.tasks import create_task
    from cope.tasks.math import EXECUTOR

    task = create_task(OmegaConf.create({"name": "gsm8k", "source": None}))
    return [{"model": "gpt-4o-mini", "messages": [{"role": "system", "content": EXECUTOR},
             {"role": "user", "content": f"Problem:\n{p.question}"}],
             "temperature": 0.0, "top_p": 1.0, "max_tokens": 512, "seed": 0, "n": 1}
            for p in task.load()[:n]]


async def bare_loop(base_url: str, payloads: list[dict], concurrency: int) -> float:
    """The same requests with the same HTTP client library and nothing else."""
    import aiohttp

    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:
        async def one(payload):
            async with semaphore:
                async with client.post(f"{base_url}/chat/completions", json=payload) as response:
                    response.raise_for_status()
                    await response.json()

        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in payloads))
        return time.perf_counter() - start


def overhead(n: int, repeats: int) -> dict:
    """cope and the bare loop in turns against one stub; the median of the per-turn ratios."""
    payloads = payloads_of(n)
    stub = StubProcess(latency=0.0)
    turns = []
    try:
        asyncio.run(bare_loop(stub.base_url, payloads[:64], 64))  # warm the stub up
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                stub_cpu = stub.cpu_s()
                setup_s, cope_s, cope_cpu = cope_run(stub.base_url, n, Path(tmp))
                cope_stub_cpu = stub.cpu_s() - stub_cpu
            cpu, stub_cpu = time.process_time(), stub.cpu_s()
            bare_s = asyncio.run(bare_loop(stub.base_url, payloads, 64))
            bare_cpu, bare_stub_cpu = time.process_time() - cpu, stub.cpu_s() - stub_cpu
            turns.append({"cope_setup_s": round(setup_s, 3), "cope_s": round(cope_s, 3),
                          "cope_req_per_s": round(n / cope_s, 1), "bare_s": round(bare_s, 3),
                          "bare_req_per_s": round(n / bare_s, 1),
                          "ratio": round(bare_s / cope_s, 3),
                          # CPU milliseconds per request: the client process (cope: its
                          # request path, set-up excluded) and the stub process
                          "cope_cpu_ms": round(1000 * cope_cpu / n, 3),
                          "bare_cpu_ms": round(1000 * bare_cpu / n, 3),
                          "stub_cpu_ms_cope": round(1000 * cope_stub_cpu / n, 3),
                          "stub_cpu_ms_bare": round(1000 * bare_stub_cpu / n, 3)})
    finally:
        stub.stop()
    def median(key):
        values = sorted(t[key] for t in turns)
        return values[len(values) // 2]

    return {"requests": n, "turns": turns, "median_ratio": median("ratio"),
            "median_cope_cpu_ms": median("cope_cpu_ms"), "median_bare_cpu_ms": median("bare_cpu_ms"),
            "median_stub_cpu_ms": median("stub_cpu_ms_bare"), "goal": ">= 0.8"}


def cope_generate(base_url: str, n: int, limit: int) -> float:
    """n requests through cope's generator (cache and backend=openai), at most `limit` in
    flight; seconds from the call to the last completion stored."""
    http = OmegaConf.create({"concurrency": limit, "requests_per_minute": None,
                             "tokens_per_minute": None, "timeout_s": 60.0, "max_retries": 3,
                             "retry_base_s": 0.1, "retry_max_s": 1.0, "check_endpoints": True})
    backend = OpenAIBackend(http)
    identity = backend.add_model("m", OmegaConf.create({
        "identity": "api:m", "base_url": base_url, "api_model": "m", "api_key_env": None}))
    with tempfile.TemporaryDirectory() as tmp:
        cache = GenerationCache(Path(tmp) / "c.sqlite")
        generator = Generator({"m": ModelBinding("m", identity, backend)}, cache)
        requests = [GenerationRequest("m", (("user", f"question {i}"),),
                                      SamplingParams(0.8, 64, seed=i), 0) for i in range(n)]
        tags = [SampleTag(str(i), "s", "executor", "large") for i in range(n)]

        async def go():
            start = time.perf_counter()
            await generator.generate(requests, tags)
            elapsed = time.perf_counter() - start
            await backend.aclose()
            return elapsed

        elapsed = asyncio.run(go())
        assert cache.count() == n
        cache.close()
    return elapsed


def concurrency(repeats: int, n: int = 2000, latency: float = 0.05, limit: int = 64) -> dict:
    """cope's generator and the bare loop in turns against one stub with `latency` seconds per
    request; the median of cope's times over the ideal n x latency / limit."""
    stub = StubProcess(latency=latency)
    ideal = n * latency / limit
    payloads = [{"model": "m", "messages": [{"role": "user", "content": f"question {i}"}],
                 "temperature": 0.8, "top_p": 1.0, "max_tokens": 64, "seed": i, "n": 1}
                for i in range(n)]
    turns = []
    try:
        asyncio.run(bare_loop(stub.base_url, payloads[:limit], limit))  # warm the stub up
        for _ in range(repeats):
            cope_s = cope_generate(stub.base_url, n, limit)
            bare_s = asyncio.run(bare_loop(stub.base_url, payloads, limit))
            turns.append({"cope_s": round(cope_s, 3), "cope_to_ideal": round(cope_s / ideal, 3),
                          "bare_s": round(bare_s, 3), "bare_to_ideal": round(bare_s / ideal, 3)})
    finally:
        stub.stop()
    cope = sorted(t["cope_to_ideal"] for t in turns)
    bare = sorted(t["bare_to_ideal"] for t in turns)
    return {"requests": n, "latency_s": latency, "concurrency": limit, "ideal_s": round(ideal, 4),
            "turns": turns, "median_cope_to_ideal": cope[len(cope) // 2],
            "median_bare_to_ideal": bare[len(bare) // 2], "goal": "cope <= 1.25"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["overhead", "concurrency"])
    args = parser.parse_args()
    result = json.loads(RESULTS.read_text()) if args.only and RESULTS.exists() else {}
    result["cpus"] = os.cpu_count()
    if args.only in (None, "overhead"):
        result["overhead"] = overhead(args.requests, args.repeats)
    if args.only in (None, "concurrency"):
        result["concurrency"] = concurrency(args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
