"""One run: validate, load problems and models, solve every problem, record, summarise.

`run(cfg)` is a plain function of a composed config; the Hydra entry point is a thin shell
around it, so notebooks and tests call it directly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cope import sandbox
from cope.backends import Backend
from cope.baselines.frugal_scorer import load_scorers
from cope.budget import Budget, BudgetExceeded
from cope.cache import GenerationCache
from cope.config import pair_label, to_container, used_roles, validate
from cope.cost import CostLedger, PriceBook, per_million_problems
from cope.engine import CascadeMethod, ProblemResult, Stage
from cope.errors import BackendUnavailable
from cope.event_loop import run as run_on_loop
from cope.generator import Generator
from cope.model_set import ModelSet, open_cache
from cope.records import RunRecorder
from cope.samples import Generation, SampleTag
from cope.tasks import create_task
from cope.tasks.base import select
from cope.trackers import create_tracker

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    problems: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def stop_signals_as_interrupt():
    """Turn SIGTERM (a scheduler's or `kill`'s stop) and SIGINT (Ctrl-C) into one
    KeyboardInterrupt raised where the run is, so a stopped run closes its records and writes
    metrics.json the same way whichever signal stopped it. (asyncio's own SIGINT handling
    would cancel the run's task instead and wait for every coroutine to unwind first.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_coroutine(coroutine, event_loop: str = "auto") -> None:
    """Run a coroutine on a new loop of the chosen kind (cope.event_loop), also from code that
    already runs an event loop (a Jupyter cell): there it runs in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run_on_loop(coroutine, event_loop)
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_on_loop(coroutine, event_loop)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=target, name="cope-run")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not inside a Hydra app: a fresh directory under runs_dir
        stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
        return Path(cfg.runs_dir) / f"{stamp}_{cfg.task.name}_{cfg.method.name}"


def sandbox_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many of the run's model-written programs ran under each sandbox isolation."""
    counts: Counter[str] = Counter()
    for row in rows:
        for stage in row.get("stages", []):
            counts.update(layers for layers in stage.get("sandbox") or [] if layers)
    return dict(sorted(counts.items()))


class Run:
    """The state of one run: its models, cache, records and running totals."""

    def __init__(self, cfg: DictConfig, backends: dict[str, Backend] | None = None) -> None:
        validate(cfg)
        self.cfg = cfg
        self.task = create_task(cfg.task)
        styles = {cfg.method.stages[name].style for name in cfg.method.order}
        if self.task.runs_programs(styles):  # a sandbox this machine lacks fails here
            sandbox.configure(cfg.sandbox.isolation)
        self.problems = select(self.task.load(), cfg.task.ids, cfg.task.offset, cfg.task.limit)
        self.run_dir = resolve_run_dir(cfg)
        self.recorder = RunRecorder(self.run_dir, to_container(cfg), resume=cfg.resume)
        self.prices = PriceBook(cfg.models, cfg.prices)
        self.roles = {role: cfg.pair.roles[role] for role in used_roles(cfg.method)}
        if "large" in self.roles and self.prices.cost(self.roles["large"], 10**6, 10**6) == 0:
            log.warning("The large role is played by '%s', which is priced as free: every cost "
                        "this run reports will be 0.", self.roles["large"])
        self.models: ModelSet | None = None
        self.prefix_cache: dict[str, Counter] = {}  # alias -> prompt and cached tokens
        self.cache: GenerationCache | None = None
        try:
            self._set_up(backends or {})
        except BaseException:
            self.close()  # servers already started must not outlive a failed set-up
            raise

    def _set_up(self, backends: dict[str, Backend]) -> None:
        cfg = self.cfg
        scorers = load_scorers(cfg, self.problems)  # before the models: a missing file fails fast
        self.models = ModelSet(cfg, self.roles.values(), backends, server_logs=self.run_dir)
        bindings = self.models.bindings
        self.cache = open_cache(cfg)
        self.budget = Budget(self.prices, cfg.budget.max_usd, cfg.budget.max_large_calls)
        self.generator = Generator(bindings, self.cache, on_sample=self._record_sample,
                                   budget=self.budget,
                                   max_consecutive_failures=cfg.faults.max_consecutive_failures)
        stages = [Stage.from_config(name, cfg.method.stages[name]) for name in cfg.method.order]
        self.method = CascadeMethod(cfg.method.name, stages, self.roles, self.task, self.generator,
                                    seed=cfg.seed, threshold_op=cfg.method.threshold_op,
                                    scorers=scorers, early_exit=cfg.method.early_exit)
        # the method solves a problem, or the task's loop around it does (agent episodes)
        self.solver = self.task.solver(self.method)
        # a resumed run starts from the problems that already finished
        self.rows: list[dict[str, Any]] = list(self.recorder.resumed)
        self.ledger = CostLedger()
        for row in self.rows:
            self.ledger.merge(CostLedger.from_json(row["cost"]))
        done = {row["id"] for row in self.rows}
        self.pending = [p for p in self.problems if p.id not in done]
        self.stopped_reason: str | None = None

    def _record_sample(self, tag: SampleTag, generation: Generation) -> None:
        completion = generation.completion
        alias = generation.request.model
        if completion.cached_tokens is not None and not generation.cache_hit:
            counts = self.prefix_cache.setdefault(alias, Counter())
            counts["prompt_tokens"] += completion.prompt_tokens
            counts["cached_tokens"] += completion.cached_tokens
        self.recorder.sample({
            "problem_id": tag.problem_id,
            "stage": tag.stage,
            "role": tag.role,
            "model_role": tag.model_role,
            "model": alias,
            "sample_index": generation.request.sample_index,
            "style": tag.extra.get("style"),  # executor samples: cot or pot
            "temperature": generation.request.params.temperature,
            "seed": generation.request.params.seed,
            "text": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "finish_reason": completion.finish_reason,
            "latency_s": round(completion.latency_s, 4),
            "cache_hit": generation.cache_hit,
            "cost_usd": self.prices.cost(alias, completion.prompt_tokens,
                                         completion.completion_tokens),
            # prompt tokens the server found in its prefix cache, when it says
            **({"cached_tokens": completion.cached_tokens}
               if completion.cached_tokens is not None else {}),
            **({"step": tag.extra["step"]} if "step" in tag.extra else {}),  # agent episodes
            **({"turn": tag.extra["turn"]} if "turn" in tag.extra else {}),  # chat turns
        })

    def problem_row(self, result: ProblemResult, correct: bool | None = None) -> dict[str, Any]:
        """A problem's record; `correct` when already judged, else judged here (null for a
        task whose answers are not judged by correctness)."""
        ledger = CostLedger()
        for tag, generation in result.generations:
            completion = generation.completion
            alias = generation.request.model
            ledger.add(tag.stage, alias, tag.model_role,
                       self.prices.cost(alias, completion.prompt_tokens, completion.completion_tokens),
                       completion.prompt_tokens, completion.completion_tokens)
        self.ledger.merge(ledger)
        problem = result.problem
        completions = [generation.completion for _, generation in result.generations]
        return {
            "index": problem.index,
            "id": problem.id,
            "answer": result.answer,
            "gold": problem.gold,
            "correct": (self.task.is_correct(problem, result.answer) if correct is None
                        else correct),
            "resolved_stage": result.resolved_stage,
            "stages": [stage.to_json() for stage in result.stages],
            **result.extra,
            "cost_usd": ledger.total,
            "cost": ledger.to_json(),
            # failed samples abstained; resume=true solves such a problem again
            "failed_samples": sum(c.failed for c in completions),
            "truncated_samples": sum(c.finish_reason == "length" for c in completions),
        }

    def metrics(self, wall_time: float, finished: bool) -> dict[str, Any]:
        n = len(self.rows)
        judged = [row["correct"] for row in self.rows if row["correct"] is not None]
        correct = sum(judged) if len(judged) == n else None  # None: not judged by correctness
        resolved = Counter(row["resolved_stage"] for row in self.rows)
        large_calls = sum(row["cost"]["calls_by_role"].get("large", 0) for row in self.rows)
        return {
            "task": self.cfg.task.name,
            "method": self.cfg.method.name,
            "pair": pair_label(self.cfg.pair),
            "roles": dict(self.roles),  # the models that played each role
            "finished": finished,
            "stopped_reason": self.stopped_reason,
            "n_problems": n,
            "n_resumed": len(self.recorder.resumed),
            "n_selected": len(self.problems),
            "n_correct": correct,
            "accuracy": None if correct is None else correct / n if n else 0.0,
            "cost_usd_total": self.ledger.total,
            "cost_usd_per_million": per_million_problems(self.ledger.total, n),
            "cost_usd_per_million_by_stage": {k: per_million_problems(v, n)
                                              for k, v in self.ledger.by_stage.items()},
            "cost_usd_per_million_by_model": {k: per_million_problems(v, n)
                                              for k, v in self.ledger.by_model.items()},
            "cost_usd_per_million_by_role": {k: per_million_problems(v, n)
                                             for k, v in self.ledger.by_role.items()},
            "tokens_by_model": {k: dict(v) for k, v in self.ledger.tokens_by_model.items()},
            "resolved_by_stage": {name: resolved.get(name, 0) for name in self.cfg.method.order},
            "calls_by_role": dict(self.ledger.calls_by_role),
            "large_calls": large_calls,
            "backend_calls": self.generator.backend_calls,
            "cache_hits": self.generator.cache_hits,
            "failed_samples": sum(row.get("failed_samples", 0) for row in self.rows),
            "truncated_samples": sum(row.get("truncated_samples", 0) for row in self.rows),
            "spent_usd": self.budget.spent_usd,  # backend calls of this invocation only
            "threshold_op": self.cfg.method.threshold_op,
            **({} if self.cfg.method.early_exit else {"pool": True}),  # every stage was run
            **({"missing_generations": dict(self.generator.missing)}
               if self.cfg.cache.mode == "survey" else {}),
            **({"task_details": details} if (details := self.task.details()) else {}),
            **({"sandbox_isolation": isolation} if (isolation := sandbox_counts(self.rows)) else {}),
            **({"serving": self.models.serving} if self.models.serving else {}),
            # of this invocation's backend calls, from servers that report their prefix cache
            **({"prefix_cache": {k: dict(v) for k, v in self.prefix_cache.items()}}
               if self.prefix_cache else {}),
            "seed": self.cfg.seed,
            "wall_time_s": round(wall_time, 3),
            **self.task.metrics(self.rows),
        }

    async def _solve_all(self, progress) -> None:
        semaphore = asyncio.Semaphore(self.cfg.concurrency)
        budget_spent = False

        async def one(problem):
            nonlocal budget_spent
            async with semaphore:
                if budget_spent:  # a problem could not be afforded: start no other
                    return
                try:
                    result = await self.solver.solve(problem)
                except BudgetExceeded:
                    budget_spent = True
                    raise
            # its generations are committed to the cache before its record is written; a run
            # stopped during the wait commits them at once and still records the problem
            try:
                correct = await self.task.is_correct_async(result.problem, result.answer)
                await self.cache.committed()
            except asyncio.CancelledError:
                self.cache.flush()
                self._record_problem(result)
                raise
            self._record_problem(result, correct)
            if progress is not None:
                n = len(self.rows)
                progress.set_postfix(
                    **({} if not self.task.votable else
                       {"acc": f"{sum(r['correct'] for r in self.rows) / n:.1%}"}),
                    cost=f"${per_million_problems(self.ledger.total, n):,.0f}/M",
                    refresh=False,
                )
                progress.update(1)

        try:
            await asyncio.gather(*(one(problem) for problem in self.pending))
        finally:
            await self.models.aclose()

    def _record_problem(self, result: ProblemResult, correct: bool | None = None) -> None:
        row = self.problem_row(result, correct)
        self.rows.append(row)
        self.recorder.problem(row)

    def execute(self) -> RunResult:
        start = time.perf_counter()
        finished = False
        progress = None
        if self.cfg.progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(self.problems), initial=len(self.rows),
                            desc=f"{self.cfg.method.name} on {self.cfg.task.name}",
                            unit="problem", dynamic_ncols=True)
        tracker = create_tracker(self.cfg.tracker)
        try:
            tracker.start(to_container(self.cfg), self.run_dir)
            with stop_signals_as_interrupt():
                run_coroutine(self._solve_all(progress), self.cfg.event_loop)
            finished = True
        except BudgetExceeded as exc:
            self.stopped_reason = f"budget: {exc}"
            log.warning("Stopped before exceeding the budget after %d of %d problems: %s",
                        len(self.rows), len(self.problems), exc)
        except BackendUnavailable as exc:
            self.stopped_reason = f"backend: {exc}"
            log.error("Stopped after %d of %d problems because a backend kept failing (%s). "
                      "Fix it and continue with resume=true.", len(self.rows), len(self.problems),
                      exc)
        except KeyboardInterrupt:
            self.stopped_reason = "interrupted"
            raise
        finally:
            if progress is not None:
                progress.close()
            metrics = self.metrics(time.perf_counter() - start, finished)
            self.recorder.finish(metrics)
            self.close()
            tracker.finish(metrics, sorted(self.rows, key=lambda r: r["index"]), self.run_dir)
        return RunResult(self.run_dir, metrics, sorted(self.rows, key=lambda r: r["index"]))

    def close(self) -> None:
        self.recorder.release()
        if self.cache is not None:
            self.cache.close()
        if self.models is not None:
            self.models.close()


def run(cfg: DictConfig, backends: dict[str, Backend] | None = None) -> RunResult:
    """Run one configuration end to end and return its metrics and run directory.

    `backends` injects ready-made backends by name (tests use a scripted one).
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg)
    return Run(cfg, backends).execute()


def summary(result: RunResult) -> str:
    m = result.metrics
    stages = ", ".join(f"{k}: {v}" for k, v in m["resolved_by_stage"].items())
    status = "" if m["finished"] else f" of {m['n_selected']} (stopped: {m['stopped_reason']})"
    lines = [
        f"{m['method']} on {m['task']} ({m['pair']}): {m['n_problems']} problems" + status,
        "  models          " + ", ".join(f"{role} {alias}" for role, alias in m["roles"].items()),
        (f"  accuracy        {m['accuracy']:.1%} ({m['n_correct']}/{m['n_problems']})"
         if m["accuracy"] is not None else
         "  accuracy        none here: judge the answers with python -m cope.judge"),
        f"  cost            ${m['cost_usd_per_million']:,.2f} per million problems "
        f"(${m['cost_usd_total']:.6f} in all)",
        f"  resolved        {stages}",
        *(["  turns resolved  " + ", ".join(f"{k}: {v}" for k, v in
                                            m["turns_resolved_by_stage"].items())]
          if "turns_resolved_by_stage" in m else []),
        *([f"  steps           {m['mean_steps']:.1f} per episode, "
           f"{m['mean_invalid_moves']:.1f} invalid"] if "mean_steps" in m else []),
        f"  large calls     {m['large_calls']}",
        f"  backend calls   {m['backend_calls']} (cache hits {m['cache_hits']})",
        f"  wall time       {m['wall_time_s']:.1f} s",
        str(result.run_dir),
    ]
    return "\n".join(lines)
