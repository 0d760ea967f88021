"""Pairwise LLM judge for open-ended answers: a run's answers against a baseline run's.

MT-Bench's pairwise comparison (Zheng et al. 2023): for every question and turn a judge
model sees the question, both assistants' answers (for turn 2, both whole conversations) and,
in the math, reasoning and coding categories, a reference answer, and ends with [[A]], [[B]]
or [[C]] (tie). Each pair is judged twice, the answers in both positions; the candidate wins
only when both orders say so, loses only when both say so, and ties otherwise. A judgement
without a readable verdict is recorded as an error and counted as a tie.

    python -m cope.judge RUN_DIR --against BASELINE_RUN_DIR [--judge ALIAS] [overrides ...]

Overrides are the `cope` command's (models, backend, cache, prices); the judge defaults to
the pair's large model. Judge generations go through the generation cache and are recorded
in the output directory (judge_samples.jsonl: every judge output; judgements.jsonl: one line
per question with both orders' verdicts; result.json: the tallies), so judging again costs
nothing, and a judgement cut off continues where it stopped. The file names differ from a
run's, so analysis over a directory of runs does not take a judgement for a run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from cope.config import refuse_renamed, renamed
from cope.cost import PriceBook
from cope.errors import ConfigError, CopeError, unknown_name
from cope.generator import Generator
from cope.model_set import ModelSet, open_cache
from cope.paths import CONFIG_DIR
from cope.records import read_complete_lines, write_atomic
from cope.runner import run_coroutine
from cope.samples import GenerationRequest, SampleTag, SamplingParams
from cope.tasks import create_task
from cope.tasks.open_ended import REFERENCE_CATEGORIES

JUDGE_SYSTEM = (
    "You are an impartial judge of AI assistants. You will read a user's question and the "
    "answers of two assistants, A and B. Decide which answer serves the user better, weighing "
    "helpfulness, relevance, accuracy, depth, creativity and level of detail. The order in "
    "which the answers appear, their length and the assistants' names must not sway you. "
    "Compare the two answers briefly, then give your verdict on the last line as exactly one "
    "of: [[A]] if assistant A is better, [[B]] if assistant B is better, [[C]] for a tie."
)
JUDGE_SYSTEM_REFERENCE = JUDGE_SYSTEM.replace(
    "Compare the two answers", "A reference answer is given: check each assistant's answer "
    "against it, since a wrong answer cannot be the better one. Compare the two answers")
SECOND_TURN = ("Judge the assistants' answers to the user's second question; the first "
               "exchange is shown for context.")
NO_ANSWER = "(no answer)"
VERDICT = re.compile(r"\[\[([ABC])\]\]")
ORDERS = ("candidate_first", "baseline_first")
CONFIG, SAMPLES, JUDGEMENTS, RESULT = "config.yaml", "judge_samples.jsonl", "judgements.jsonl", "result.json"


class JudgeRecords:
    """A judgement's files. Lines are appended as they finish; opened again with the same
    settings, the questions already judged are kept (a torn last line is dropped)."""

    def __init__(self, out_dir: Path, config: dict[str, Any]) -> None:


        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.out_dir / CONFIG
        if config_path.is_file():
            old = yaml.safe_load(config_path.read_text())
            if old != config:
                changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise ConfigError(f"{self.out_dir} holds a judgement with other settings "
                                  f"({', '.join(changed)}); choose another --out.")
        else:
            write_atomic(config_path, yaml.safe_dump(config, sort_keys=False))
        self.rows = read_complete_lines(self.out_dir / JUDGEMENTS)
        done = {row["id"] for row in self.rows}
        samples = [s for s in read_complete_lines(self.out_dir / SAMPLES)
                   if s["problem_id"] in done]  # those of a question cut off come again
        for name, lines in ((JUDGEMENTS, self.rows), (SAMPLES, samples)):
            write_atomic(self.out_dir / name, "".join(json.dumps(r) + "\n" for r in lines))

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.out_dir / name, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def sample(self, record: dict[str, Any]) -> None:
        self._append(SAMPLES, record)

    def judgement(self, record: dict[str, Any]) -> None:
        self._append(JUDGEMENTS, record)

    def finish(self, result: dict[str, Any]) -> None:

        write_atomic(self.out_dir / RESULT, json.dumps(result, indent=2) + "\n")


def parse_verdict(text: str) -> str | None:
    """The judge's last [[A]], [[B]] or [[C]]; None when there is none."""
    found = VERDICT.findall(text or "")
    return found[-1] if found else None


def outcome(verdict: str | None, order: str) -> str:
    """The candidate's result (win, loss, tie, error) from one order's verdict."""
    if verdict is None:
        return "error"
    if verdict == "C":
        return "tie"
    candidate = "A" if order == "candidate_first" else "B"
    return "win" if verdict == candidate else "loss"


def combine(first: str, second: str) -> str:
    """Both orders together: a win or a loss only when both agree, else a tie; an error in
    either order is an error (tallied as a tie)."""
    if "error" in (first, second):
        return "error"
    return first if first == second else "tie"


def tally(outcomes: list[str]) -> dict[str, Any]:
    counts = Counter(outcomes)
    n = len(outcomes)
    wins, losses = counts["win"], counts["loss"]
    ties = counts["tie"] + counts["error"]  # an unreadable judgement counts as a tie
    return {
        "n": n, "wins": wins, "ties": ties, "losses": losses, "errors": counts["error"],
        "win_rate": wins / n if n else None,
        "loss_rate": losses / n if n else None,
        "win_rate_ties_half": (wins + ties / 2) / n if n else None,
    }


def _labelled(text: str | None) -> str:
    return (text or "").strip() or NO_ANSWER


def judge_messages(questions: list[str], answers_a: list[str | None], answers_b: list[str | None],
                   turn: int, reference: list[str] | None = None) -> tuple[tuple[str, str], ...]:
    """The judge's prompt for turn `turn` (from 1): A and B as given."""
    ref = reference[turn - 1] if reference and len(reference) >= turn else None
    system = JUDGE_SYSTEM_REFERENCE if ref else JUDGE_SYSTEM
    if turn == 1:
        parts = [f"[Question]\n{questions[0]}"]
        if ref:
            parts.append(f"[Reference answer]\n{ref}")
        parts += [f"[Assistant A's answer]\n{_labelled(answers_a[0])}",
                  f"[Assistant B's answer]\n{_labelled(answers_b[0])}"]
        return (("system", system), ("user", "\n\n".join(parts)))

    def chat(name: str, answers: list[str | None]) -> str:
        lines = []
        for k in range(turn):
            lines += [f"User: {questions[k]}", f"Assistant {name}: {_labelled(answers[k])}"]
        return f"[Conversation with assistant {name}]\n" + "\n\n".join(lines)

    parts = [SECOND_TURN]
    if ref:
        parts.append(f"[Reference answer to the second question]\n{ref}")
    parts += [chat("A", answers_a), chat("B", answers_b)]
    return (("system", system), ("user", "\n\n".join(parts)))


def read_answers(run_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A run's config and its problem records by question id; refuses a run of another task."""


    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml).")
    config = yaml.safe_load(config_path.read_text())
    if config["task"]["name"] != "mt_bench":
        raise ConfigError(f"{run_dir} is a run of task '{config['task']['name']}'; the judge "
                          "compares mt_bench runs.")
    rows = {row["id"]: row for row in read_complete_lines(run_dir / "problems.jsonl")}
    return config, rows


class Judge:
    """Judges a candidate run against a baseline run with one judge model."""

    def __init__(self, cfg, alias: str, max_tokens: int = 512, backends=None) -> None:

        if alias not in cfg.models:
            raise ConfigError("--judge: " + (renamed(alias)
                                             or _unknown_alias(alias, cfg.models.keys())))
        self.cfg, self.alias, self.max_tokens = cfg, alias, max_tokens
        self.prices = PriceBook(cfg.models, cfg.prices)
        self.prices.cost(alias, 0, 0)  # an unpriced judge fails here, before any call
        self.models = ModelSet(cfg, [alias], backends)  # no server_logs: the judge starts none
        self.cache = open_cache(cfg)
        self.recorder = None
        self.generator = Generator(self.models.bindings, self.cache,
                                   on_sample=self._record_sample)

    def _record_sample(self, tag, generation) -> None:
        completion = generation.completion
        self.recorder.sample({
            "problem_id": tag.problem_id, "turn": tag.extra["turn"], "order": tag.extra["order"],
            "role": "judge", "model": self.alias, "text": completion.text,
            "verdict": parse_verdict(completion.text),
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "finish_reason": completion.finish_reason, "latency_s": round(completion.latency_s, 4),
            "cache_hit": generation.cache_hit,
            "cost_usd": self.prices.cost(self.alias, completion.prompt_tokens,
                                         completion.completion_tokens),
        })

    async def _judge_question(self, problem, candidate: dict[str, Any], baseline: dict[str, Any]
                              ) -> dict[str, Any]:

        questions = problem.meta["turns"]
        reference = (problem.meta.get("reference")
                     if problem.meta.get("category") in _reference_categories() else None)
        ours, theirs = candidate["answers"], baseline["answers"]
        requests, tags = [], []
        for turn in range(1, len(questions) + 1):
            for order in ORDERS:
                a, b = (ours, theirs) if order == "candidate_first" else (theirs, ours)
                messages = judge_messages(questions, a, b, turn, reference)
                requests.append(GenerationRequest(self.alias, messages,
                                                  SamplingParams(0.0, self.max_tokens)))
                tags.append(SampleTag(problem.id, f"turn-{turn}", "judge", "judge",
                                      {"turn": turn, "order": order}))
        generations = await self.generator.generate(requests, tags)
        turns, cost = [], 0.0
        for turn in range(1, len(questions) + 1):
            verdicts = {}
            for order in ORDERS:
                k = 2 * (turn - 1) + ORDERS.index(order)
                completion = generations[k].completion
                cost += self.prices.cost(self.alias, completion.prompt_tokens,
                                         completion.completion_tokens)
                verdict = parse_verdict(completion.text)
                verdicts[order] = {"verdict": verdict, "outcome": outcome(verdict, order)}
            turns.append({"turn": turn, **verdicts,
                          "outcome": combine(*(verdicts[o]["outcome"] for o in ORDERS))})
        return {"index": problem.index, "id": problem.id, "category": problem.meta.get("category"),
                "reference_used": reference is not None, "turns": turns, "judge_cost_usd": cost}

    def run(self, candidate_dir: Path, baseline_dir: Path, out_dir: Path) -> dict[str, Any]:


        candidate_cfg, ours = read_answers(candidate_dir)
        _, theirs = read_answers(baseline_dir)
        problems = create_task(OmegaConf.create(candidate_cfg["task"])).load()
        both = [p for p in problems if p.id in ours and p.id in theirs]
        if not both:
            raise ConfigError(f"{candidate_dir} and {baseline_dir} answered no question in common.")
        config = {"judge": self.alias, "identity": self.generator.bindings[self.alias].identity,
                  "max_tokens": self.max_tokens, "candidate": str(candidate_dir),
                  "baseline": str(baseline_dir)}
        self.recorder = JudgeRecords(out_dir, config)
        rows = list(self.recorder.rows)
        done = {row["id"] for row in rows}

        async def judge_all() -> None:
            for problem in both:
                if problem.id in done:
                    continue
                row = await self._judge_question(problem, ours[problem.id], theirs[problem.id])
                await self.cache.committed()
                rows.append(row)
                self.recorder.judgement(row)

        try:
            run_coroutine(judge_all())
        finally:
            result = summarise(rows, self.alias, candidate_dir, baseline_dir,
                               skipped=sorted(set(ours) ^ set(theirs)))
            result["candidate_metrics"] = _run_metrics(candidate_dir)
            result["baseline_metrics"] = _run_metrics(baseline_dir)
            self.recorder.finish(result)
        return result

    def close(self) -> None:
        self.cache.close()
        self.models.close()


def summarise(rows: list[dict[str, Any]], alias: str, candidate_dir: Path, baseline_dir: Path,
              skipped: list[str] | None = None) -> dict[str, Any]:
    """Wins, ties and losses of the candidate, overall and per turn."""
    by_turn: dict[int, list[str]] = {}
    for row in rows:
        for turn in row["turns"]:
            by_turn.setdefault(turn["turn"], []).append(turn["outcome"])
    every = [o for outcomes in by_turn.values() for o in outcomes]
    return {
        "judge": alias, "candidate": str(candidate_dir), "baseline": str(baseline_dir),
        "n_questions": len(rows), "skipped_questions": skipped or [],
        "overall": tally(every),
        "by_turn": {str(t): tally(o) for t, o in sorted(by_turn.items())},
        "judge_cost_usd": sum(row["judge_cost_usd"] for row in rows),
        "rule": "each turn judged in both orders; a win or loss only when both orders agree, "
                "else a tie; unreadable verdicts are errors, counted as ties",
    }


def _run_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    m = json.loads(path.read_text())
    keys = ("method", "pair", "n_problems", "cost_usd_per_million", "resolved_by_stage",
            "turns_resolved_by_stage", "wall_time_s")
    return {k: m.get(k) for k in keys}


def _reference_categories() -> tuple[str, ...]:

    return REFERENCE_CATEGORIES


def _unknown_alias(alias: str, known) -> str:

    return unknown_name("model alias", alias, known)


def judge_runs(candidate_dir: str | Path, baseline_dir: str | Path, overrides: list[str] | None = None,
               alias: str | None = None, out: str | Path | None = None, max_tokens: int = 512,
               backends=None) -> tuple[dict[str, Any], Path]:
    """Judge `candidate_dir`'s answers against `baseline_dir`'s; (result, output directory).
    `backends` injects ready-made backends by name, as for `cope.runner.run`."""


    candidate_dir, baseline_dir = Path(candidate_dir), Path(baseline_dir)
    for run_dir in (candidate_dir, baseline_dir):  # before a model is loaded
        read_answers(run_dir)
    GlobalHydra.instance().clear()
    refuse_renamed(overrides or [])
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides or []))
    alias = alias or cfg.pair.roles["large"]
    if max_tokens < 1:
        raise ConfigError(f"--max-tokens={max_tokens}: the judge needs at least 1 token.")
    out_dir = Path(out) if out else candidate_dir / f"judge-vs-{baseline_dir.name}-{alias}"
    judge = Judge(cfg, alias, max_tokens, backends)
    try:
        return judge.run(candidate_dir, baseline_dir, out_dir), out_dir
    finally:
        judge.close()


def format_result(result: dict[str, Any]) -> str:
    lines = [f"judge {result['judge']}: {result['n_questions']} questions",
             f"  candidate {result['candidate']}", f"  baseline  {result['baseline']}"]
    for name, t in [("overall", result["overall"])] + [
            (f"turn {k}", v) for k, v in result["by_turn"].items()]:
        rate = "-" if t["win_rate"] is None else f"{t['win_rate']:.1%}"
        half = "-" if t["win_rate_ties_half"] is None else f"{t['win_rate_ties_half']:.1%}"
        lines.append(f"  {name:<8} wins {t['wins']}  ties {t['ties']} (errors {t['errors']})  "
                     f"losses {t['losses']}  win rate {rate} (ties as half: {half})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cope.judge",
        description="Judge a run's open-ended answers pairwise against a baseline run's "
                    "(MT-Bench), both orders.")
    parser.add_argument("run_dir", help="the run whose answers are judged (e.g. method=cope)")
    parser.add_argument("--against", required=True,
                        help="the baseline run (e.g. method=large on the same questions)")
    parser.add_argument("--judge", help="model alias of the judge (default: pair.roles.large)")
    parser.add_argument("--out", help="output directory (default: RUN_DIR/judge-vs-...)")
    parser.add_argument("--max-tokens", type=int, default=512, help="judge's token budget")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `cope`")
    args = parser.parse_intermixed_args(argv)  # overrides may follow the options

    try:
        result, out_dir = judge_runs(args.run_dir, args.against, args.overrides, args.judge,
                                     args.out, args.max_tokens)
    except CopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_result(result))
    print(out_dir / RESULT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
