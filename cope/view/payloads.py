"""What the viewer's pages show, as plain data: the runs below a directory, one run's
problems, and one problem with its stages, plans and executions.

Each payload is built from the records when it is asked for (the files are re-read only when
they changed), so a page opened on a running sweep shows what has been written so far.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from cope.results.intervals import wilson_interval
from cope.results.pareto import frontier_of
from cope.results.runs import cell_label, cell_of, run_summary
from cope.results.styles import method_style
from cope.view.questions import questions
from cope.view.records import RunFiles

# fields today's problem records carry; older records may lack some (shown as unknown)
PROBLEM_FIELDS = ("correct", "resolved_stage", "cost_usd", "stages")


def file_key(text: str) -> str:
    """A file name for a run or problem key: readable, and unique by its hash."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:60] or "run"
    return f"{readable}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


class RunsDir:
    """The runs at or below `root`, found afresh on every listing."""

    # a directory walk per request would dominate a page of a large tree; runs that appear
    # while a sweep goes on show within this many seconds
    RESCAN_S = 2.0

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.shown_root = Path(root).as_posix()  # as the user gave it: an export names no home
        self._files: dict[Path, RunFiles] = {}
        self._reported: set[str] = set()
        self._found: tuple[float, dict[str, Path]] = (-math.inf, {})
        self._runs: dict[str, tuple[dict, dict]] = {}

    # -- finding runs --------------------------------------------------------------------
    def run_dirs(self) -> dict[str, Path]:
        """key (the path below root) -> run directory, for every directory holding
        problems.jsonl (config.yaml may be missing or broken: the run still shows)."""
        when, found = self._found
        if time.monotonic() - when > self.RESCAN_S:
            paths = sorted(p.parent for p in self.root.rglob("problems.jsonl")) \
                if self.root.is_dir() else []
            found = {(p.relative_to(self.root).as_posix() if p != self.root else p.name): p
                     for p in paths}
            self._found = (time.monotonic(), found)
        return found

    def files(self, key: str) -> RunFiles:
        path = self.run_dirs().get(key)
        if path is None:
            raise KeyError(f"no run {key!r} below {self.root}")
        if path not in self._files:
            self._files[path] = RunFiles(path)
        return self._files[path]

    def _say(self, key: str, notes: list[str]) -> None:
        """Each note once on the terminal too."""
        for note in notes:
            line = f"{key}: {note}"
            if line not in self._reported:
                self._reported.add(line)
                print(f"cope view: {line}", file=sys.stderr)

    # -- one run -------------------------------------------------------------------------
    def run(self, key: str) -> dict[str, Any]:
        """The run as `cope.results.runs` has it, from tolerant reading, with its notes;
        built again only when its files changed."""
        loaded = self.files(key).load()
        cached = self._runs.get(key)
        if cached is not None and cached[0] is loaded:
            return cached[1]
        run = self._build_run(key, loaded)
        self._runs[key] = (loaded, run)
        return run

    def _build_run(self, key: str, loaded: dict[str, Any]) -> dict[str, Any]:
        config, notes = loaded["config"], list(loaded["notes"])
        problems = [_with_defaults(p) for p in loaded["problems"]]
        missing = sorted({f for p in loaded["problems"] for f in PROBLEM_FIELDS if f not in p})
        if missing:
            notes.append(f"problem records lack {', '.join(missing)} (written by an older cope?); "
                         "shown as unknown")
        try:
            cell = cell_of(config)
            label = cell_label(cell)
        except Exception as exc:  # an older or hand-edited config: show what the records say
            method = ((config or {}).get("method") or {}).get("name", "?")
            cell = {"task": ((config or {}).get("task") or {}).get("name", "?"), "pair": "?",
                    "method": method, "seed": (config or {}).get("seed", 0),
                    "order": _stage_names(problems)}
            label = f"{method} (config not understood)"
            if config is not None:
                notes.append(f"config.yaml is not one this cope reads ({type(exc).__name__}: "
                             f"{exc}); written by an older cope? shown by its records only")
        metrics = loaded["metrics"]
        n_selected = (metrics or {}).get("n_selected") or _n_selected(config)
        self._say(key, notes)
        shown = self.shown_root if self.files(key).path == self.root else f"{self.shown_root}/{key}"
        return {"key": key, "run_dir": shown, "config": config,
                "metrics": metrics, "problems": problems, "cell": cell, "label": label,
                "finished": bool(metrics and metrics.get("finished")),
                "n_selected": n_selected, "notes": notes}

    def summary(self, run: dict[str, Any]) -> dict[str, Any]:
        s = run_summary(run)
        n, k = s["n"], s["n_correct"]
        s["accuracy_ci"] = list(wilson_interval(k, n)) if k is not None and n else None
        stopped = (run["metrics"] or {}).get("stopped_reason")
        s["status"] = ("finished" if run["finished"] else
                       f"stopped: {stopped}" if stopped else
                       "running or stopped" if run["metrics"] is None else "unfinished")
        s.update(key=run["key"], file=file_key(run["key"]), notes=run["notes"],
                 n_problems_with_truncated=sum(bool(p.get("truncated_samples")) for p in run["problems"]),
                 style=method_style(s["method"]))
        return _clean(s)

    # -- payloads ------------------------------------------------------------------------
    def runs_payload(self) -> dict[str, Any]:
        summaries, broken = [], []
        for key in self.run_dirs():
            try:
                summaries.append(self.summary(self.run(key)))
            except Exception as exc:  # one unreadable run must not hide the others
                broken.append(f"{key}: cannot be read ({type(exc).__name__}: {exc})")
        self._say("runs", broken)
        notes = broken[:]
        if not summaries and not broken:
            notes.append(f"no runs below {self.root}: a run directory holds problems.jsonl "
                         "(and config.yaml); pass a run, a multirun or a directory of runs")
            self._say("runs", notes)
        return {"root": self.shown_root, "runs": summaries, "groups": _groups(summaries),
                "notes": notes}

    def run_payload(self, key: str) -> dict[str, Any]:
        run = self.run(key)
        summary = self.summary(run)
        config = run["config"] or {}
        texts, question_note = questions(config.get("task"))
        order = list(run["cell"].get("order") or _stage_names(run["problems"]))
        stages = [_stage_settings(config, name) for name in order]
        rows = []
        for p in run["problems"]:
            pid = str(p.get("id"))
            rows.append({
                "id": pid, "index": p.get("index"), "file": file_key(pid),
                "question": texts.get(pid), "answer": p.get("answer"), "gold": p.get("gold"),
                "correct": p.get("correct"), "resolved_stage": p.get("resolved_stage"),
                "cost_usd": p.get("cost_usd"),
                "consensus": {s.get("stage"): s.get("consensus") for s in p.get("stages") or []},
                "truncated": p.get("truncated_samples"), "failed": p.get("failed_samples"),
            })
        return _clean({"key": key, "summary": summary, "stages": stages, "problems": rows,
                       "question_note": question_note, "notes": summary["notes"]})

    def problem_payload(self, key: str, problem_id: str) -> dict[str, Any]:
        run = self.run(key)
        record = next((p for p in run["problems"] if str(p.get("id")) == problem_id), None)
        if record is None:
            raise KeyError(f"run {key!r} has no finished problem {problem_id!r}")
        config = run["config"] or {}
        texts, question_note = questions(config.get("task"))
        samples = self.files(key).samples.samples(problem_id)
        by_stage: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for s in samples:
            by_stage[s.get("stage")][s.get("role", "executor")].append(s)
        costs = ((record.get("cost") or {}).get("by_stage_usd")) or {}
        stages = [_stage_view(config, stage, by_stage, costs.get(stage.get("stage")))
                  for stage in record.get("stages") or []]
        shown = {s["name"] for s in stages}
        return _clean({
            "key": key, "label": run["label"], "id": problem_id, "question": texts.get(problem_id),
            "question_note": question_note, "gold": record.get("gold"),
            "answer": record.get("answer"), "correct": record.get("correct"),
            "resolved_stage": record.get("resolved_stage"), "cost_usd": record.get("cost_usd"),
            "truncated": record.get("truncated_samples"), "failed": record.get("failed_samples"),
            "stages": stages,
            # samples of stages the record does not list (a stopped problem's, an old run's)
            "other_samples": [_sample_view(s) for s in samples if s.get("stage") not in shown],
            "compare": self._runs_with(run, problem_id),
        })

    def _runs_with(self, run: dict[str, Any], problem_id: str) -> list[dict[str, str]]:
        """Other runs of the same task that finished this problem, for side-by-side views."""
        out = []
        for key in self.run_dirs():
            if key == run["key"]:
                continue
            try:
                other = self.run(key)
            except Exception:
                continue
            if other["cell"].get("task") == run["cell"].get("task") and any(
                    str(p.get("id")) == problem_id for p in other["problems"]):
                out.append({"key": key, "file": file_key(key), "label": other["label"]})
        return out


def _with_defaults(problem: dict[str, Any]) -> dict[str, Any]:
    return {"correct": None, "resolved_stage": None, "cost_usd": 0.0, "stages": [], **problem}


def _stage_names(problems: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(s.get("stage") for p in problems for s in p.get("stages") or []))


def _n_selected(config: dict[str, Any] | None) -> int | None:
    task = (config or {}).get("task") or {}
    return len(task["ids"]) if task.get("ids") else task.get("limit")


def _stage_settings(config: dict[str, Any], name: str) -> dict[str, Any]:
    method = config.get("method") or {}
    stage = (method.get("stages") or {}).get(name) or {}
    return {"name": name, "threshold": stage.get("threshold"),
            "threshold_op": method.get("threshold_op", "gt"), "votes": stage.get("votes"),
            "planner": stage.get("planner"), "plan": stage.get("plan"),
            "executor": stage.get("executor"), "confidence": stage.get("confidence")}


def _sample_view(s: dict[str, Any]) -> dict[str, Any]:
    return {"index": s.get("sample_index"), "role": s.get("role"), "model": s.get("model"),
            "text": s.get("text"), "finish_reason": s.get("finish_reason"),
            "truncated": s.get("finish_reason") == "length",
            "tokens": s.get("completion_tokens", s.get("tokens")), "cost_usd": s.get("cost_usd"),
            "latency_s": s.get("latency_s"), "cache_hit": s.get("cache_hit"),
            "style": s.get("style")}


def _plan_key(ref: dict[str, Any]) -> str:
    return f"{ref.get('stage')}:{ref.get('slot')}"


def _stage_view(config: dict[str, Any], stage: dict[str, Any],
                by_stage: dict[str, dict[str, list[dict]]], cost: float | None) -> dict[str, Any]:
    """One stage of one problem: its plans (text from the planner samples they name, each
    once, by "stage:slot"), each execution with its extracted answer and the plans it read,
    and the vote's decision."""
    name = stage.get("stage")
    settings = _stage_settings(config, name)
    planner_samples = {f"{s.get('stage')}:{s.get('sample_index')}": s
                       for samples in by_stage.values() for s in samples.get("planner", [])}
    refs = [ref for refs in stage.get("plans") or [] for ref in refs] + list(
        stage.get("passed_on") or [])
    own = [k for k, s in planner_samples.items() if s.get("stage") == name]
    plans = {}
    for key in dict.fromkeys([*own, *map(_plan_key, refs)]):
        sample = planner_samples.get(key, {})
        ref = next((r for r in refs if _plan_key(r) == key), {})
        plans[key] = {"kind": ref.get("kind"), "author": ref.get("author", sample.get("model_role")),
                      "stage": key.split(":")[0], "text": sample.get("text"),
                      "truncated": sample.get("finish_reason") == "length",
                      "model": sample.get("model"), "tokens": sample.get("completion_tokens")}
    executions = sorted(by_stage.get(name, {}).get("executor", []),
                        key=lambda s: s.get("sample_index") or 0)
    answers = stage.get("answers") or []
    read = stage.get("plans") or []
    support = set(stage.get("support") or [])
    rows = []
    for i, sample in enumerate(executions):
        index = sample.get("sample_index", i)
        rows.append({**_sample_view(sample),
                     "answer": answers[index] if index < len(answers) else None,
                     "supports": index in support,
                     "plans": [_plan_key(r) for r in (read[index] if index < len(read) else [])]})
    return {
        "name": name, "answer": stage.get("answer"), "consensus": stage.get("consensus"),
        "threshold": settings["threshold"], "threshold_op": settings["threshold_op"],
        "confidence": stage.get("confidence_rule") or settings["confidence"],
        "accepted": stage.get("accepted"), "votes": stage.get("votes"),
        "abstained": stage.get("abstained"), "tied": stage.get("tied"), "cost_usd": cost,
        "plans": plans, "passed_on": [_plan_key(r) for r in stage.get("passed_on") or []],
        "executions": rows,
    }


def _groups(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs by task and pair, as points of an accuracy-cost plot with their frontier."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        if s.get("accuracy") is None or not s.get("n"):
            continue  # open-ended tasks have no accuracy
        groups[(s["task"], s["pair"])].append(
            {"key": s["key"], "file": s["file"], "label": s["label"], "method": s["method"], "n": s["n"],
             "cost": s["cost_usd_per_million"], "accuracy": s["accuracy"],
             "accuracy_ci": s["accuracy_ci"], "style": s["style"]})
    out = []
    for (task, pair), points in sorted(groups.items()):
        front = {id(p) for p in frontier_of(points)}
        for p in points:
            p["frontier"] = id(p) in front
        out.append({"task": task, "pair": pair, "points": points})
    return out


def _clean(value: Any) -> Any:
    """NaN and infinities as None, tuples as lists: plain JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
