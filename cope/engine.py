"""The stage engine: a method is an ordered list of stages, each plan -> execute -> decide.

COPE, its ablations and the single-model baselines are all configurations of this one
loop. A stage may write new plans (goal, guideline or both; one per execution or one shared),
carry the plan passed on by the previous stage, or work without a plan. Its executions are
combined by the task into an answer and a confidence; the stage answers when the confidence
passes its threshold, and otherwise passes a plan on to the next stage. The last stage
always answers.

The baselines use two more stage fields. `style` chooses the executor prompt: the task's own
(cot), a program that prints the answer (pot), or both alternating (mixed: MoT).
`confidence` names the rule that turns the executions into a vote and decides whether
the stage answers (cope/confidence/).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cope.confidence import Decision, Rule, Scorer, StageSamples, rule_for
from cope.config import StageConfig, validate_stage_rule
from cope.errors import ConfigError
from cope.generator import Generator, RetaggingGenerator
from cope.samples import (
    Generation,
    GenerationRequest,
    SampleTag,
    SamplingParams,
    stable_seed,
)
from cope.tasks.base import Plan, Problem, Task, Vote

NEW_PLAN_KINDS = {"goal": ("goal",), "guideline": ("guideline",), "both": ("goal", "guideline")}


@dataclass
class Stage(StageConfig):
    """A stage as the engine runs it: its config (cope.config.StageConfig) and its name."""

    name: str = ""

    @classmethod
    def from_config(cls, name: str, cfg: Any) -> "Stage":
        fields = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        return cls(name=name, **fields)

    def sample_styles(self) -> list[tuple[str, int]]:
        """(style, sample index within that style's prompt) of each execution. Mixed stages
        alternate CoT and PoT, so n votes reuse the samples of any smaller n."""
        if self.style != "mixed":
            return [(self.style, i) for i in range(self.votes)]
        return [("cot" if i % 2 == 0 else "pot", i // 2) for i in range(self.votes)]


@dataclass
class StageResult:
    name: str
    vote: Vote
    accepted: bool
    plans: list[list[Plan]]  # the plans each execution was conditioned on
    passed_on: list[Plan]  # the plan handed to the next stage
    rule: str = "consensus"  # how vote.confidence was computed
    styles: list[str] | None = None  # per-sample styles of a stage that is not all CoT
    perplexities: list[float | None] | None = None  # confidence=perplexity: per sample

    def to_json(self) -> dict[str, Any]:
        data = {
            "stage": self.name,
            "answer": self.vote.answer,
            "consensus": self.vote.confidence,
            "accepted": self.accepted,
            "votes": len(self.vote.answers),
            "abstained": sum(a is None for a in self.vote.answers),
            "answers": self.vote.answers,
            "support": self.vote.support,
            "tied": self.vote.tied,
            "plans": [[plan_ref(p) for p in plans] for plans in self.plans],
            "passed_on": [plan_ref(p) for p in self.passed_on],
        }
        if self.vote.sandbox is not None:
            data["sandbox"] = self.vote.sandbox
        if self.rule != "consensus" or self.styles is not None:
            data["confidence_rule"] = self.rule
            data["styles"] = self.styles
        if self.perplexities is not None:
            chosen = self.vote.support[0] if self.vote.support else None
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

    def __init__(self, name: str, stages: list[Stage], roles: dict[str, str], task: Task,
                 generator: Generator | RetaggingGenerator, seed: int = 0,
                 threshold_op: str = "gt",
                 scorers: dict[str, Scorer] | None = None, early_exit: bool = True) -> None:
        self.name = name
        self.stages = stages
        self.roles = roles  # role -> model alias
        self.task = task
        self.generator = generator
        self.seed = seed
        self.threshold_op = threshold_op
        # False: a pool; every stage runs on every problem, and the first to accept answers
        self.early_exit = early_exit
        self.scorers = dict(scorers or {})  # stage name -> scorer (confidence=scorer)
        self.rules: dict[str, Rule] = {}  # stage name -> its confidence rule
        for stage in stages:
            where = f"method.stages.{stage.name}"
            validate_stage_rule(stage, where, type(task))
            rule = self.rules[stage.name] = rule_for(stage.confidence, type(task))
            if rule.needs_scorer and stage.name not in self.scorers:
                raise ConfigError(f"{where}: confidence={stage.confidence}, but no scorer was "
                                  "loaded for it.")

    def with_generator(self, generator: Generator | RetaggingGenerator) -> CascadeMethod:
        """The same method drawing its samples through another generator."""
        return CascadeMethod(self.name, self.stages, self.roles, self.task,
                             generator, seed=self.seed, threshold_op=self.threshold_op,
                             scorers=self.scorers, early_exit=self.early_exit)

    def _request(self, alias: str, messages, temperature: float, max_tokens: int,
                 sample_index: int, want_logprobs: bool = False) -> GenerationRequest:
        # The sampling seed depends on the run seed, the prompt and the sample index: sample i
        # of a prompt is the same whichever stage list, vote count or threshold asks for it,
        # and different prompts never share a random stream.
        seed = stable_seed("sample", self.seed, messages, sample_index) % (2**31 - 1)
        params = SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed)
        return GenerationRequest(model=alias, messages=messages, params=params,
                                 sample_index=sample_index, want_logprobs=want_logprobs)

    async def _generate(self, problem: Problem, stage: Stage, kind: str, role: str,
                        requests: list[GenerationRequest], collected: list,
                        styles: list[str] | None = None) -> list[Generation]:
        tags = [SampleTag(problem.id, stage.name, kind, role, {"sample_index": r.sample_index})
                for r in requests]
        for tag, style in zip(tags, styles or []):
            tag.extra["style"] = style
        generations = await self.generator.generate(requests, tags)
        collected.extend(zip(tags, generations))
        return generations

    async def _write_plans(self, problem: Problem, stage: Stage, collected: list
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

    async def run_stage(self, problem: Problem, stage: Stage, carried: list[Plan],
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
        rule = self.rules[stage.name]
        requests = [
            self._request(alias, self._execute_messages(problem, contexts[i], style),
                          stage.executor_temperature, stage.max_tokens, index,
                          rule.wants_logprobs)
            for i, (style, index) in enumerate(styles)
        ]
        generations = await self._generate(problem, stage, "executor", stage.executor, requests,
                                           collected, [style for style, _ in styles])
        decision: Decision = await rule.decide(StageSamples(
            problem, stage, self.task, generations, rng, self.scorers.get(stage.name)))
        vote = decision.vote
        return StageResult(stage.name, vote,
                           is_last or rule.accepts(decision, stage, self.threshold_op),
                           contexts, self._pass_on(stage, new_plans, carried, vote, rng),
                           rule=stage.confidence,
                           styles=None if stage.style == "cot" else [s for s, _ in styles],
                           perplexities=decision.perplexities)

    def _execute_messages(self, problem: Problem, plans: list[Plan], style: str):
        if style == "pot":
            return self.task.program_messages(problem, plans)
        return self.task.execute_messages(problem, plans)

    @staticmethod
    def _pass_on(stage: Stage, new_plans: list[list[Plan]] | None, carried: list[Plan],
                 vote: Vote, rng: random.Random) -> list[Plan]:
        """The plan the next stage may use: g^S chosen at random among the plans whose
        execution gave the majority answer (among all, if every sample abstained); a shared
        plan as is; otherwise what this stage was given."""
        if new_plans is None:
            return list(carried)
        if not stage.plan_per_sample:
            return list(new_plans[0])
        candidates = vote.support or list(range(len(new_plans)))
        return list(new_plans[rng.choice(candidates)])

    async def solve(self, problem: Problem) -> ProblemResult:
        collected: list[tuple[SampleTag, Generation]] = []
        results: list[StageResult] = []
        carried: list[Plan] = []
        answering: StageResult | None = None
        for position, stage in enumerate(self.stages):
            is_last = position == len(self.stages) - 1
            # seeded by run seed, problem and stage: the choice of g^S is reproducible and does
            # not shift when other stages are added or removed
            rng = SeededOnUse(("plan-choice", self.seed, problem.id, stage.name))
            result = await self.run_stage(problem, stage, carried, rng, is_last, collected)
            results.append(result)
            if result.accepted and answering is None:
                answering = result
                if self.early_exit:
                    break
            # what a stage passes on does not depend on whether it answered, so a pool's later
            # stages are the ones any threshold would reach
            carried = result.passed_on
        assert answering is not None, "the last stage always answers"
        return ProblemResult(problem, answering.vote.answer, answering.name, results, collected)
