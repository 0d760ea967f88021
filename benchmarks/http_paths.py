"""HTTP request paths against a local OpenAI-compatible stub (in its own process).

- overhead: N GSM8K problems, the large model alone, 64 in flight, the stub answering at
  once, against a bare asyncio loop (aiohttp) sending the same N requests. Two cope figures:
  `engine` is the request path the goal names (engine, generator, cache, backend=openai:
  every problem solved and its generations committed to the cache, no records or grading);
  `run` is `Run.execute()`, which also writes samples.jsonl and problems.jsonl and grades.
  Goal: cope >= 0.8 of the bare loop's requests per second.
- concurrency: 2000 requests through cope's generator and backend at concurrency 64, the stub
  taking 50 ms each. Goal: at most 1.25 x the ideal 2000 x 0.05 / 64 seconds.

Every figure is taken on each event loop (asyncio's and uvloop's, `--loops`); cope and the
bare loop run on the same one, each with the heap made before it frozen out of the garbage
collector (cope.event_loop.run), as a bare loop in a process of its own would have it.

    python benchmarks/http_paths.py [--requests 1000] [--repeats 5] [--only overhead]

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

from cope import fast_json
from cope.backends.openai_compat import OpenAIBackend
from cope.cache import GenerationCache
from cope.config import register_configs
from cope.event_loop import run as run_on_loop
from cope.samples import (GenerationRequest, SampleTag, SamplingParams, messages_to_dicts,
                          stable_seed)
from cope.generator import Generator, ModelBinding
from cope.runner import Run
from cope.servers import free_port

RESULTS = Path(__file__).parent / "results" / "http_paths.json"


class StubProcess:
    def __init__(self, latency: float, event_loop: str = "asyncio") -> None:
        self.port = free_port()
        self.event_loop = event_loop
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cope.testing.stub_server", "--port", str(self.port),
             "--latency", str(latency), "--event-loop", event_loop], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def compose_run_config(base_url: str, n: int, workdir: Path, loop: str):
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "method=large", "pair.roles.large=gpt-4o-mini", f"task.limit={n}", "concurrency=64",
            "http.concurrency=64", "progress=false", f"run_dir={workdir / 'run'}",
            f"cache.path={workdir / 'cache.sqlite'}", "backend.name=scripted",
            f"event_loop={loop}"])
    cfg.models["gpt-4o-mini"].base_url = base_url
    cfg.models["gpt-4o-mini"].api_key_env = None  # the stub needs no key
    return cfg


def timed(stub: StubProcess, work) -> tuple[float, float, float]:
    """(seconds, client CPU seconds, stub CPU seconds) of work()."""
    stub_cpu, cpu, start = stub.cpu_s(), time.process_time(), time.perf_counter()
    work()
    return (time.perf_counter() - start, time.process_time() - cpu, stub.cpu_s() - stub_cpu)


def cope_run(stub: StubProcess, n: int, workdir: Path, loop: str) -> dict:
    """Run.execute() with an empty cache: every request goes through the engine, generator,
    cache and backend, and every sample and problem is recorded and graded."""
    cfg = compose_run_config(stub.base_url, n, workdir, loop)
    start = time.perf_counter()
    session = Run(cfg)  # validate, load problems, check the endpoint, open cache and records
    setup = time.perf_counter() - start
    results = []
    seconds, cpu, stub_cpu = timed(stub, lambda: results.append(session.execute()))
    samples = (workdir / "run" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == n and results[0].metrics["backend_calls"] == n, results[0].metrics
    return {"setup_s": setup, "s": seconds, "cpu": cpu, "stub_cpu": stub_cpu}


def cope_engine(stub: StubProcess, n: int, workdir: Path, loop: str) -> dict:
    """The engine over the same problems with the generator, cache and openai backend, as a
    run drives it (64 problems in flight, each problem's generations committed to the cache
    when it is solved), without the records and grading."""
    cfg = compose_run_config(stub.base_url, n, workdir, loop)
    start = time.perf_counter()
    session = Run(cfg)
    session.generator.on_sample = None  # no sample records
    setup = time.perf_counter() - start
    solved = []

    async def drive() -> None:
        semaphore = asyncio.Semaphore(cfg.concurrency)

        async def one(problem) -> None:
            async with semaphore:
                result = await session.method.solve(problem)
            await session.cache.committed()
            solved.append(result.answer)

        try:
            await asyncio.gather(*(one(problem) for problem in session.pending))
        finally:
            await session.models.aclose()

    try:
        seconds, cpu, stub_cpu = timed(stub, lambda: run_on_loop(drive(), loop))
    finally:
        session.recorder.close()
        session.close()
    assert len(solved) == n and session.generator.backend_calls == n, session.generator.backend_calls
    return {"setup_s": setup, "s": seconds, "cpu": cpu, "stub_cpu": stub_cpu}


def payloads_of(n: int) -> list[dict]:
    """The bodies cope sends for the run's requests (the large model's one greedy sample of
    each problem, with the seed the engine gives it: run seed 0, sample 0)."""
    from cope.tasks import create_task

    task = create_task(OmegaConf.create({"name": "gsm8k", "source": None}))
    payloads = []
    for problem in task.load()[:n]:
        messages = task.execute_messages(problem, [])
        payloads.append({"model": "gpt-4o-mini", "messages": messages_to_dicts(messages),
                         "temperature": 0.0, "top_p": 1.0, "max_tokens": 512,
                         "seed": stable_seed("sample", 0, messages, 0) % (2**31 - 1), "n": 1})
    return payloads


async def bare_loop(base_url: str, payloads: list[dict], concurrency: int) -> float:
    """The same requests with the same HTTP client library and nothing else; bodies encoded
    and decoded with the JSON library cope uses (orjson when installed), so the same bytes
    go over the wire."""
    import aiohttp

    semaphore = asyncio.Semaphore(concurrency)
    url = f"{base_url}/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:
        async def one(payload):
            async with semaphore:
                async with client.post(url, data=fast_json.dumps(payload),
                                       headers=headers) as response:
                    response.raise_for_status()
                    fast_json.loads(await response.read())

        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in payloads))
        return time.perf_counter() - start


def bare(stub: StubProcess, payloads: list[dict], loop: str, concurrency: int = 64) -> dict:
    seconds, cpu, stub_cpu = timed(
        stub, lambda: run_on_loop(bare_loop(stub.base_url, payloads, concurrency), loop))
    return {"s": seconds, "cpu": cpu, "stub_cpu": stub_cpu}


def median(values) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def overhead(n: int, repeats: int, loop: str, stub_loop: str) -> dict:
    """The full run, the engine path and the bare loop in turns against one stub (the order
    rotating from turn to turn); medians of the per-turn ratios."""
    payloads = payloads_of(n)
    stub = StubProcess(latency=0.0, event_loop=stub_loop)
    paths = ["run", "engine", "bare"]
    turns = []
    try:
        run_on_loop(bare_loop(stub.base_url, payloads[:64], 64), loop)  # warm the stub up
        for turn in range(repeats):
            figures = {}
            for path in paths[turn % 3:] + paths[:turn % 3]:
                with tempfile.TemporaryDirectory() as tmp:
                    if path == "run":
                        figures[path] = cope_run(stub, n, Path(tmp), loop)
                    elif path == "engine":
                        figures[path] = cope_engine(stub, n, Path(tmp), loop)
                    else:
                        figures[path] = bare(stub, payloads, loop)
            row = {}
            for path, f in figures.items():
                row[f"{path}_s"] = round(f["s"], 3)
                row[f"{path}_req_per_s"] = round(n / f["s"], 1)
                # CPU milliseconds per request: the client process (cope: the timed path,
                # set-up excluded) and the stub process
                row[f"{path}_cpu_ms"] = round(1000 * f["cpu"] / n, 3)
                row[f"{path}_stub_cpu_ms"] = round(1000 * f["stub_cpu"] / n, 3)
            for path in ("run", "engine"):
                row[f"{path}_setup_s"] = round(figures[path]["setup_s"], 3)
                row[f"{path}_ratio"] = round(figures["bare"]["s"] / figures[path]["s"], 3)
            turns.append(row)
            print(loop, row, flush=True)
    finally:
        stub.stop()
    keys = ["engine_ratio", "run_ratio", "engine_cpu_ms", "run_cpu_ms", "bare_cpu_ms",
            "bare_stub_cpu_ms", "engine_req_per_s", "run_req_per_s", "bare_req_per_s"]
    return {"requests": n, "event_loop": loop, "stub_event_loop": stub_loop, "turns": turns,
            **{f"median_{key}": median(t[key] for t in turns) for key in keys},
            "goal": ">= 0.8"}


def cope_generate(base_url: str, n: int, limit: int, loop: str) -> float:
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
            await cache.committed()
            elapsed = time.perf_counter() - start
            await backend.aclose()
            return elapsed

        elapsed = run_on_loop(go(), loop)
        assert cache.count() == n
        cache.close()
    return elapsed


def concurrency(repeats: int, loop: str, stub_loop: str, n: int = 2000, latency: float = 0.05,
                limit: int = 64) -> dict:
    """cope's generator and the bare loop in turns against one stub with `latency` seconds per
    request; the median of cope's times over the ideal n x latency / limit."""
    stub = StubProcess(latency=latency, event_loop=stub_loop)
    ideal = n * latency / limit
    payloads = [{"model": "m", "messages": [{"role": "user", "content": f"question {i}"}],
                 "temperature": 0.8, "top_p": 1.0, "max_tokens": 64, "seed": i, "n": 1}
                for i in range(n)]
    turns = []
    try:
        run_on_loop(bare_loop(stub.base_url, payloads[:limit], limit), loop)  # warm up
        for turn in range(repeats):
            order = ["cope", "bare"] if turn % 2 == 0 else ["bare", "cope"]
            seconds, cpu = {}, {}
            for path in order:
                spent = time.process_time()
                if path == "cope":
                    seconds[path] = cope_generate(stub.base_url, n, limit, loop)
                else:
                    seconds[path] = run_on_loop(bare_loop(stub.base_url, payloads, limit), loop)
                cpu[path] = time.process_time() - spent
            turns.append({"cope_s": round(seconds["cope"], 3),
                          "cope_to_ideal": round(seconds["cope"] / ideal, 3),
                          "bare_s": round(seconds["bare"], 3),
                          "bare_to_ideal": round(seconds["bare"] / ideal, 3),
                          # client CPU ms per request (cope: with the backend's and cache's
                          # set-up and the cache's close)
                          "cope_cpu_ms": round(1000 * cpu["cope"] / n, 3),
                          "bare_cpu_ms": round(1000 * cpu["bare"] / n, 3)})
            print(loop, stub_loop, turns[-1], flush=True)
    finally:
        stub.stop()
    return {"requests": n, "latency_s": latency, "concurrency": limit, "ideal_s": round(ideal, 4),
            "event_loop": loop, "stub_event_loop": stub_loop, "turns": turns,
            "median_cope_to_ideal": median(t["cope_to_ideal"] for t in turns),
            "median_bare_to_ideal": median(t["bare_to_ideal"] for t in turns),
            "goal": "cope <= 1.25"}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["overhead", "concurrency"])
    parser.add_argument("--loops", nargs="+", default=["asyncio", "uvloop"],
                        choices=["asyncio", "uvloop"], help="event loops to measure on")
    parser.add_argument("--stub-loop", default="uvloop", choices=["asyncio", "uvloop"],
                        help="the stub's event loop")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args()
    result = json.loads(args.out.read_text()) if args.only and args.out.exists() else {}
    result["cpus"] = os.cpu_count()
    for name in ("overhead", "concurrency"):
        if args.only not in (None, name):
            continue
        figures = {"load_average_before": load_average()}
        for loop in args.loops:
            if name == "overhead":
                figures[loop] = overhead(args.requests, args.repeats, loop, args.stub_loop)
            else:
                figures[loop] = concurrency(args.repeats, loop, args.stub_loop)
        figures["load_average_after"] = load_average()
        result[name] = figures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
