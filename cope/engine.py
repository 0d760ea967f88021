"""The stage engine: a method is an ordered list of stages, each plan -> execute -> decide.

COPE, its ablations and the single-model baselines are all configurations of this one
loop. A stage may write new plans (goal, guideline or both; one per execution or one shared),
carry the plan passed on by the previous stage, or work without a plan. Its executions are
combined by the task into an answer and a confidence; the stage answers when the confidence
passes its threshold, and otherwise passes a plan on to the next stage. The last stage
always answers.

The baselines use two more stage fields. `style` chooses the executor prompt: the task's own
(cot), a program that prints the answer (pot), or both alternating (mixed: MoT). `confidence`
chooses the rule: consensus (the top answer's share), agreement (the CoT and PoT majorities
agree: 1, else 0), scorer (a trained scorer's probability that the answer is right) or
perplexity (open-ended answers: the candidate with the lowest perplexity answers, and the
stage escalates when that perplexity is above `max_perplexity`; see cope/perplexity.py).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cope import perplexity as ppl
from cope.errors import BackendError, ConfigError
from cope.generation import Generation, GenerationRequest, SampleTag, SamplingParams, stable_seed
from cope.generator import Generator, RetaggingGenerator
from cope.tasks.base import Plan, Problem, Task, Verdict

NEW_PLAN_KINDS = {"goal": ("goal",), "guideline": ("guideline",), "both": ("goal", "guideline")}


@dataclass(frozen=True)
class StageSpec:
    name: str
    executor: str  # role
    votes: int = 1
    planner: str | None = None  # role
    plan: str = "none"  # goal | guideline | both | none | carry
    plan_per_sample: bool = True
    keep_previous_plan: bool = False
    planner_temperature: float = 0.8
    executor_temperature: float = 0.0
    threshold: float | None = None
    plan_max_tokens: int = 64
    max_tokens: int = 512
    style: str = "cot"  # cot | pot | mixed
    confidence: str = "consensus"  # consensus | agreement | scorer | perplexity
    program_timeout_s: float = 10.0
    max_perplexity: float | None = None  # confidence=perplexity: answer when at most this

    @classmethod
    def from_config(cls, name: str, cfg: Any) -> "StageSpec":
        return cls(
            name=name, executor=cfg.executor, votes=int(cfg.votes), planner=cfg.planner,
            plan=cfg.plan, plan_per_sample=bool(cfg.plan_per_sample),
            keep_previous_plan=bool(cfg.keep_previous_plan),
            planner_temperature=float(cfg.planner_temperature),
            executor_temperature=float(cfg.executor_temperature),
            threshold=None if cfg.threshold is None else float(cfg.threshold),
            plan_max_tokens=int(cfg.plan_max_tokens), max_tokens=int(cfg.max_tokens),
            style=cfg.style, confidence=cfg.confidence,
            program_timeout_s=float(cfg.program_timeout_s),
            max_perplexity=(None if getattr(cfg, "max_perplexity", None) is None
                            else float(cfg.max_perplexity)),
        )

    def sample_styles(self) -> list[tuple[str, int]]:
        """(style, sample index within that style's prompt) of each execution. Mixed stages
        alternate CoT and PoT, so n votes reuse the samples of any smaller n."""
        if self.style != "mixed":
            return [(self.style, i) for i in range(self.votes)]
        return [("cot" if i % 2 == 0 else "pot", i // 2) for i in range(self.votes)]


class Scorer(Protocol):
    """A learned judge of one answer (FrugalGPT): the probability that it is right."""

    def probability(self, question: str, response: str) -> float: ...


@dataclass
class StageResult:
    name: str
    verdict: Verdict
    accepted: bool
    plans: list[list[Plan]]  # the plans each execution was conditioned on
    passed_on: list[Plan]  # the plan handed to the next stage
    rule: str = "consensus"  # how verdict.confidence was computed
    styles: list[str] | None = None  # per-sample styles of a stage that is not all CoT
    perplexities: list[float | None] | None = None  # confidence=perplexity: per sample

    def to_json(self) -> dict[str, Any]:
        data = {
            "stage": self.name,
            "answer": self.verdict.answer,
            "consensus": self.verdict.confidence,
            "accepted": self.accepted,
            "votes": len(self.verdict.answers),
            "abstained": sum(a is None for a in self.verdict.answers),
            "answers": self.verdict.answers,
            "support": self.verdict.support,
            "tied": self.verdict.tied,
            "plans": [[plan_ref(p) for p in plans] for plans in self.plans],
            "passed_on": [plan_ref(p) for p in self.passed_on],
        }
        if self.verdict.sandbox is not None:
            data["sandbox"] = self.verdict.sandbox
        if self.rule != "consensus" or self.styles is not None:
            data["confidence_rule"] = self.rule
            data["styles"] = self.styles
        if self.perplexities is not None:
            chosen = self.verdict.support[0] if self.verdict.support else None
            data["perplexity"] = None if chosen is None else self.perplexities[chosen]
            data["perplexities"] = self.perplexities
        return data


@dataclass
class ProblemResult:
    problem: Problem
    answer: str | None
    resolved_stage: str
    stages: list[StageResult]
    generations: list[tuple[SampleTag, Generation]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # fields a task adds to the record


def plan_ref(plan: Plan) -> dict[str, Any]:
    """Where a plan came from: enough to find its text in samples.jsonl."""
    return {"kind": plan.kind, "author": plan.author, "stage": plan.stage, "slot": plan.slot}


def scored_response(texts: list[str], support: list[int]) -> str:
    """The response a scorer judges (FrugalGPT's g(q, a)): the first one behind the answer."""
    return texts[support[0] if support else 0]


def passes(confidence: float, threshold: float, op: str) -> bool:
    """gt: confidence > threshold; ge: confidence >= threshold."""
    if op not in ("gt", "ge"):
        raise ValueError(f"threshold_op must be gt or ge, not {op!r}")
    return confidence > threshold if op == "gt" else confidence >= threshold


class SeededOnUse:
    """A random.Random seeded with stable_seed(*parts) when first used: most stages break no
    tie and choose no plan, and seeding costs more than the rest of a stage's bookkeeping."""

    __slots__ = ("_parts", "_rng")

    def __init__(self, parts: tuple) -> None:
        self._parts = parts
        self._rng: random.Random | None = None

    def __getattr__(self, name: str):
        if self._rng is None:
            self._rng = random.Random(stable_seed(*self._parts))
        return getattr(self._rng, name)


class CascadeMethod:
    """Runs a list of stages on one problem at a time."""

    def __init__(self, name: str, stages: list[StageSpec], roles: dict[str, str], task: Task,
                 generator: Generator | RetaggingGenerator, seed: int = 0,
                 threshold_op: str = "gt",
                 scorers: dict[str, Scorer] | None = None) -> None:
        self.name = name
        self.stages = stages
        self.roles = roles  # role -> model alias
        self.task = task
        self.generator = generator
        self.seed = seed
        self.threshold_op = threshold_op
        self.scorers = dict(scorers or {})  # stage name -> scorer (confidence=scorer)
        for stage in stages:
            if stage.style not in task.styles:
                raise ConfigError(f"method.stages.{stage.name}.style={stage.style}: task "
                                  f"'{task.name}' offers {', '.join(task.styles)}.")
            if stage.confidence == "scorer" and stage.name not in self.scorers:
                raise ConfigError(f"method.stages.{stage.name}: confidence=scorer, but no scorer "
                                  "was loaded for it.")
            if (stage.confidence in ("consensus", "agreement") and stage.votes > 1
                    and not task.votable):
                raise ConfigError(
                    f"method.stages.{stage.name}: task '{task.name}' has open-ended answers, "
                    f"which cannot be voted on ({stage.votes} votes, confidence="
                    f"{stage.confidence}). Use confidence=perplexity, or votes=1.")

    def with_generator(self, generator: Generator | RetaggingGenerator) -> CascadeMethod:
        """The same method drawing its samples through another generator."""
        return CascadeMethod(self.name, self.stages, self.roles, self.task,
                             generator, seed=self.seed, threshold_op=self.threshold_op,
                             scorers=self.scorers)

    def _request(self, alias: str, messages, temperature: float, max_tokens: int,
                 sample_index: int, want_logprobs: bool = False) -> GenerationRequest:
        # The sampling seed depends on the run seed, the prompt and the sample index: sample i
        # of a prompt is the same whichever stage list, vote count or threshold asks for it,
        # and different prompts never share a random stream.
        seed = stable_seed("sample", self.seed, messages, sample_index) % (2**31 - 1)
        params = SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed)
        return GenerationRequest(model=alias, messages=messages, params=params,
                                 sample_index=sample_index, want_logprobs=want_logprobs)

    async def _generate(self, problem: Problem, stage: StageSpec, kind: str, role: str,
                        requests: list[GenerationRequest], collected: list,
                        styles: list[str] | None = None) -> list[Generation]:
        tags = [SampleTag(problem.id, stage.name, kind, role, {"sample_index": r.sample_index})
                for r in requests]
        for tag, style in zip(tags, styles or []):
            tag.extra["style"] = style
        generations = await self.generator.generate(requests, tags)
        collected.extend(zip(tags, generations))
        return generations

    async def _write_plans(self, problem: Problem, stage: StageSpec, collected: list
                           ) -> list[list[Plan]]:
        """New plans: one slot per execution (or one shared slot), each of the stage's kinds."""
        kinds = NEW_PLAN_KINDS[stage.plan]
        slots = stage.votes if stage.plan_per_sample else 1
        alias = self.roles[stage.planner]
        order = [(slot, kind) for slot in range(slots) for kind in kinds]
        requests = [
            self._request(alias, self.task.plan_messages(problem, kind), stage.planner_temperature,
                          stage.plan_max_tokens, slot)
            for slot, kind in order
        ]
        generations = await self._generate(problem, stage, "planner", stage.planner, requests,
                                           collected)
        plans = [Plan(kind=kind, text=g.text.strip(), author=stage.planner, stage=stage.name,
                      slot=slot)
                 for g, (slot, kind) in zip(generations, order)]
        return [plans[slot * len(kinds):(slot + 1) * len(kinds)] for slot in range(slots)]

    async def run_stage(self, problem: Problem, stage: StageSpec, carried: list[Plan],
                        rng: random.Random, is_last: bool, collected: list) -> StageResult:
        new_plans = (await self._write_plans(problem, stage, collected)
                     if stage.plan in NEW_PLAN_KINDS else None)
        base = carried if (stage.keep_previous_plan or stage.plan == "carry") else []

        def plans_for(i: int) -> list[Plan]:
            if new_plans is None:
                return list(base)
            return list(base) + new_plans[i if stage.plan_per_sample else 0]

        contexts = [plans_for(i) for i in range(stage.votes)]
        alias = self.roles[stage.executor]
        styles = stage.sample_styles()
        by_perplexity = stage.confidence == "perplexity"
        requests = [
            self._request(alias, self._execute_messages(problem, contexts[i], style),
                          stage.executor_temperature, stage.max_tokens, index, by_perplexity)
            for i, (style, index) in enumerate(styles)
        ]
        generations = await self._generate(problem, stage, "executor", stage.executor, requests,
                                           collected, [style for style, _ in styles])
        texts = [g.text for g in generations]
        if by_perplexity:
            verdict, scores = self._lowest_perplexity(stage, generations, rng)
            accepted = is_last or (verdict.answer is not None and ppl.within(
                scores[verdict.support[0]] if verdict.support else None, stage.max_perplexity))
            return StageResult(stage.name, verdict, accepted, contexts,
                               self._pass_on(stage, new_plans, carried, verdict, rng),
                               rule=stage.confidence, perplexities=scores)
        if stage.style == "cot":
            verdict = await self.task.aggregate_async(problem, texts, rng)
        else:
            verdict = await self._vote_styles(problem, stage, styles, texts, rng)
        if stage.confidence != "consensus":
            verdict = await self._confidence(problem, stage, styles, texts, verdict, rng)
        if is_last or stage.threshold is None:
            accepted = True
        else:
            accepted = verdict.answer is not None and passes(
                verdict.confidence, stage.threshold, self.threshold_op)
        return StageResult(stage.name, verdict, accepted, contexts,
                           self._pass_on(stage, new_plans, carried, verdict, rng),
                           rule=stage.confidence,
                           styles=None if stage.style == "cot" else [s for s, _ in styles])

    def _lowest_perplexity(self, stage: StageSpec, generations: list[Generation],
                           rng: random.Random) -> tuple[Verdict, list[float | None]]:
        """The candidate with the lowest perplexity answers. A failed or empty sample
        abstains; a sample that came back without logprobs is an error, not an abstention."""
        scores: list[float | None] = []
        answers: list[str | None] = []
        for generation in generations:
            completion = generation.completion
            text = completion.text.strip()
            if completion.failed or not text:
                scores.append(None)
                answers.append(None)
                continue
            if completion.token_logprobs is None:
                raise BackendError(
                    f"method.stages.{stage.name}: model '{generation.request.model}' returned no "
                    "logprobs, which confidence=perplexity needs. Serve it with a backend that "
                    "reports them (llamacpp, openai with logprobs, sglang, transformers).")
            scores.append(ppl.perplexity(completion.token_logprobs))
            answers.append(text)
        chosen = ppl.lowest(scores, rng)
        if chosen is None:
            return Verdict(answer=None, confidence=0.0, support=[], answers=answers), scores
        return Verdict(answer=answers[chosen], confidence=1.0 / scores[chosen], support=[chosen],
                       answers=answers), scores

    def _execute_messages(self, problem: Problem, plans: list[Plan], style: str):
        if style == "pot":
            return self.task.program_messages(problem, plans)
        return self.task.execute_messages(problem, plans)

    async def _vote_styles(self, problem: Problem, stage: StageSpec,
                           styles: list[tuple[str, int]], texts: list[str],
                           rng: random.Random) -> Verdict:
        """Majority vote over samples of several styles: CoT answers are read from the text,
        PoT answers by running the program (in worker threads: programs take time)."""

        def answer(style: str, text: str) -> str | None:
            if style == "pot":
                return self.task.program_answer(problem, text, stage.program_timeout_s)
            return self.task.extract(text)

        answers = await asyncio.gather(*(asyncio.to_thread(answer, style, text)
                                         for (style, _), text in zip(styles, texts)))
        isolation = self.task.program_isolation()
        return replace(self.task.vote(problem, list(answers), rng),
                       sandbox=[isolation if style == "pot" else None for style, _ in styles])

    async def _confidence(self, problem: Problem, stage: StageSpec,
                          styles: list[tuple[str, int]], texts: list[str], verdict: Verdict,
                          rng: random.Random) -> Verdict:
        """The stage's confidence under a rule other than consensus."""
        if stage.confidence == "scorer":
            response = scored_response(texts, verdict.support)
            scorer = self.scorers[stage.name]
            probability = await asyncio.to_thread(scorer.probability, problem.question, response)
            return replace(verdict, confidence=float(probability))
        # agreement (MoT verify): the CoT majority and the PoT majority are the same answer
        positions = {kind: [i for i, (style, _) in enumerate(styles) if style == kind]
                     for kind in ("cot", "pot")}
        majorities = {kind: self.task.vote(problem, [verdict.answers[i] for i in where], rng)
                      for kind, where in positions.items()}
        cot, pot = majorities["cot"], majorities["pot"]
        agree = (cot.answer is not None and pot.answer is not None
                 and self.task.vote(problem, [cot.answer, pot.answer]).confidence == 1.0)
        if not agree:
            return replace(verdict, confidence=0.0)
        support = sorted([positions["cot"][j] for j in cot.support]
                         + [positions["pot"][j] for j in pot.support])
        return replace(verdict, answer=cot.answer, confidence=1.0, support=support)

    @staticmethod
    def _pass_on(stage: StageSpec, new_plans: list[list[Plan]] | None, carried: list[Plan],
                 verdict: Verdict, rng: random.Random) -> list[Plan]:
        """The plan the next stage may use: g^S chosen at random among the plans whose
        execution gave the majority answer (among all, if every sample abstained); a shared
        plan as is; otherwise what this stage was given."""
        if new_plans is None:
            return list(carried)
        if not stage.plan_per_sample:
            return list(new_plans[0])
        candidates = verdict.support or list(range(len(new_plans)))
        return list(new_plans[rng.choice(candidates)])

    async def solve(self, problem: Problem) -> ProblemResult:
        collected: list[tuple[SampleTag, Generation]] = []
        results: list[StageResult] = []
        carried: list[Plan] = []
        for position, stage in enumerate(self.stages):
            is_last = position == len(self.stages) - 1
            # seeded by run seed, problem and stage: the choice of g^S is reproducible and does
            # not shift when other stages are added or removed
            rng = SeededOnUse(("plan-choice", self.seed, problem.id, stage.name))
            result = await self.run_stage(problem, stage, carried, rng, is_last, collected)
            results.append(result)
            if result.accepted:
                return ProblemResult(problem, result.verdict.answer, stage.name, results, collected)
            carried = result.passed_on
        raise AssertionError("the last stage always answers")  # pragma: no cover
