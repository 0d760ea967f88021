"""Structured-config schemas for the Hydra app and the checks run before any generation.

The schemas are registered with Hydra's ConfigStore as `base_config`; `conf/config.yaml`
extends it, so a misspelt key fails when the config is composed, not hours into a run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cope.backends import BACKENDS
from cope.confidence import rule_for, rule_names
from cope.errors import ConfigError, unknown_name
from cope.event_loop import EVENT_LOOPS
from cope.paths import CONFIG_DIR
from cope.sandbox.isolation import CHOICES as ISOLATIONS
from cope.tasks import task_class
from cope.trackers import TRACKERS


class PlanType(StrEnum):
    """What a stage's planner writes: a goal, a guideline, both; no plan; or the plan the
    previous stage passed on (carry)."""

    goal = "goal"
    guideline = "guideline"
    both = "both"
    none = "none"
    carry = "carry"


class Style(StrEnum):
    """Executor styles: the task's own prompt (chain of thought), a program that prints the
    answer (program of thought), or both alternating (MoT: even samples CoT, odd PoT)."""

    cot = "cot"
    pot = "pot"
    mixed = "mixed"


class ThresholdOp(StrEnum):
    gt = "gt"  # confidence > threshold
    ge = "ge"  # confidence >= threshold


class Batching(StrEnum):
    """How the embedded llama.cpp backend batches (backend.batch_size > 1)."""

    fixed = "fixed"  # a stage's executions of one problem together: reproducible bit for bit
    continuous = "continuous"  # every sequence in flight, slots refilled as they finish: fast


class CacheMode(StrEnum):
    readwrite = "readwrite"  # look up, store misses
    readonly = "readonly"  # replay: a miss is an error
    # read only; a miss is counted and abstains, and nothing is generated: what a config
    # would need beyond a cache (cope-calibrate's pools)
    survey = "survey"
    off = "off"


# backends that report per-token logprobs (confidence=perplexity needs them)
LOGPROB_BACKENDS = ("llamacpp", "openai", "sglang", "transformers")


# Aliases and price names are keys of `models` and `prices`; Hydra reads a dot in an override's
# key as a path, so a dot is written "_" in them (the model's own name keeps its dots in
# `identity`, `api_model` and `packaged`). The names they had before:
RENAMED = {"qwen-coder-0.5b": "qwen-coder-0_5b", "qwen-coder-1.5b": "qwen-coder-1_5b",
           "qwen2.5-1.5b": "qwen2_5-1_5b", "exaone-3.5-2.4b": "exaone-3_5-2_4b",
           "gemini-2.0-flash": "gemini-2_0-flash", "gpt-4.1": "gpt-4_1"}


def renamed(name: str) -> str:
    """A sentence for a model alias or price name that was renamed, else ''."""
    if name in RENAMED:
        return (f"'{name}' is now '{RENAMED[name]}' (names of models and prices have no dots, "
                "so that models.<alias>.<field>=... can be written on the command line).")
    return ""


def current_aliases(roles) -> dict[str, str]:
    """A pair's roles under today's alias names (a run made before a rename named the same
    models by their former names)."""
    return {role: RENAMED.get(alias, alias) for role, alias in dict(roles or {}).items()}


def refuse_renamed(overrides) -> None:
    """A ConfigError for the first override that names a renamed alias by its old name."""
    for argument in overrides:
        if problem := renamed_override(argument):
            raise ConfigError(problem)


def renamed_override(argument: str) -> str:
    """An error for a command-line override that addresses a renamed alias by its old name,
    which Hydra's parser would refuse with a lexer error; '' when there is none."""
    key = argument.split("=", 1)[0].lstrip("+~")
    for section in ("models.", "prices."):
        if key.startswith(section):
            rest = key[len(section):]
            for old in RENAMED:
                if rest == old or rest.startswith(old + "."):
                    return f"{argument}: " + renamed(old)
    return ""


@dataclass
class StageConfig:
    planner: Optional[str] = None  # a role of the pair (small, large, ...) or null
    plan: PlanType = PlanType.none
    plan_per_sample: bool = True  # n plans, one per execution; false: one plan shared by all
    keep_previous_plan: bool = False  # also show the plan passed on by the previous stage
    executor: str = "small"
    votes: int = 1
    planner_temperature: float = 0.8
    executor_temperature: float = 0.0
    threshold: Optional[float] = None  # null: the stage always answers
    plan_max_tokens: int = 64
    max_tokens: int = 512
    style: Style = Style.cot
    confidence: str = "consensus"  # a rule of cope.confidence.RULES
    # confidence=perplexity: the stage answers when its lowest candidate perplexity,
    # exp(mean negative log-likelihood per token), is at most this; null: always answers
    max_perplexity: Optional[float] = None
    scorer: Optional[str] = None  # confidence=scorer: a scorer file (relative: $COPE_HOME/scorers/)
    program_timeout_s: float = 10.0  # style pot or mixed: a program's time to print its answer


@dataclass
class MethodConfig:
    name: str = MISSING
    votes: int = 8
    tau1: float = 0.75
    tau2: float = 0.5
    # perplexity thresholds of COPE's stages 1 and 2 when the task's confidence is perplexity
    max_perplexity1: Optional[float] = None
    max_perplexity2: Optional[float] = None
    threshold_op: ThresholdOp = ThresholdOp.gt  # the paper says "exceeds" without pinning it
    max_tokens: int = 512  # executor budget, shared by the stages that interpolate it
    plan_max_tokens: int = 64  # planner budget: a goal is one sentence, a guideline two
    stages: dict[str, StageConfig] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # stages run, in this order
    # false: a pool (experiment=pool): every stage runs on every problem and the first that
    # accepts answers, so any thresholds replay from its generations (cope-calibrate)
    early_exit: bool = True


@dataclass
class AgentConfig:
    """Interactive tasks (textworld, alfworld): one problem is one episode of a game."""

    max_steps: int = 30  # actions per episode before it counts as lost
    history: int = 8  # past steps (action and what followed) shown to the models
    # generated TextWorld games (task=textworld): tw-make's options, and the seed of game i
    # is game_seed + i, so the same settings always give the same games
    games: int = 3
    world_size: int = 2
    nb_objects: int = 4
    quest_length: int = 2
    game_seed: int = 1
    alfworld_config: Optional[str] = None  # task=alfworld: alfworld's base_config.yaml


@dataclass
class TaskConfig:
    name: str = MISSING
    source: Optional[str] = None  # file or directory; null: packaged data or the Hub
    split: str = "test"
    limit: Optional[int] = None
    offset: int = 0
    ids: Optional[list[str]] = None
    hidden_tests: Optional[str] = None  # mbpp: an MBPP-ET file to judge on; null: the given tests
    timeout_s: float = 10.0  # code tasks: wall-clock seconds for one candidate's tests
    # the task family's stage confidence, which COPE's stages use: consensus (math, agents;
    # code tasks answer by their tests through it) or perplexity (open-ended: mt_bench)
    confidence: str = "consensus"
    references: Optional[str] = None  # mt_bench: reference answers for the judge (a jsonl)
    agent: AgentConfig = field(default_factory=AgentConfig)


@dataclass
class PairConfig:
    name: str = MISSING
    roles: dict[str, str] = field(default_factory=dict)  # role -> model alias


@dataclass
class ServerConfig:
    """A server the run starts for a model and stops at its end."""

    kind: Optional[str] = None  # null: none; llama_cpp (CPU), sglang (GPU) or vllm (both)
    # null: the model's GGUF file (llama_cpp), or its Hugging Face export (vllm, packaged models)
    model_path: Optional[str] = None
    python: Optional[str] = None  # the interpreter that has the engine; null: this one
    args: list[str] = field(default_factory=list)  # e.g. [--tp-size, "2"]
    host: str = "127.0.0.1"
    port: Optional[int] = None  # null: a free port
    startup_timeout_s: float = 600.0


@dataclass
class ModelConfig:
    identity: str = MISSING  # what the model is; part of every cache key
    backend: str = "llamacpp"
    packaged: Optional[str] = None  # name of a packaged GGUF model
    path: Optional[str] = None  # a GGUF file of your own
    price: Optional[str] = None  # a key of the price table
    base_url: Optional[str] = None  # backend=openai: the endpoint's /v1 address
    api_model: Optional[str] = None  # backend=openai: the model name the endpoint expects
    api_key_env: Optional[str] = None  # backend=openai: environment variable holding the key
    extra_body: dict[str, Any] = field(default_factory=dict)  # extra request fields (top_k, ...)
    chat_template: Optional[str] = None  # backend=sglang: a Jinja chat template
    tokenizer: Optional[str] = None  # backend=sglang: a Hugging Face tokenizer with the template
    hf_model: Optional[str] = None  # backend=transformers: a Hugging Face id or directory
    # serving engines (backend=sglang, managed servers): seeded samples must reproduce, so an
    # SGLang server must run with --enable-deterministic-inference (a managed one is started
    # with it); false accepts a faster server whose samples do not reproduce, keyed apart
    deterministic: bool = True
    server: ServerConfig = field(default_factory=ServerConfig)  # one the run starts (kind set)
    description: str = ""


@dataclass
class PriceConfig:
    input_per_m: float = MISSING  # USD per 1M prompt tokens
    output_per_m: float = MISSING  # USD per 1M completion tokens
    note: str = ""


@dataclass
class BackendConfig:
    name: str = "llamacpp"
    n_threads: Optional[int] = None  # null: all cores
    n_ctx: int = 4096
    n_batch: int = 512
    # Reusing the KV cache of a matching prompt prefix is faster, but the last prompt token is
    # then evaluated alone, which changes logits in the last bits: seeded samples reproduce
    # exactly only without it.
    reuse_prefix: bool = False
    # sequences decoded together (the n executions of a stage): much faster on a CPU; 1 decodes
    # one request at a time, whose seeded samples reproduce exactly on their own
    batch_size: int = 8
    batch_n_ctx: int = 16384  # KV cells shared by a batch (per sequence: batch_n_ctx / batch_size)
    # fixed: the sequences of one generate call (a stage of one problem) decoded together;
    # continuous: one batch per model for every problem and stage in flight, a finished
    # sequence's slot refilled at once (cope/backends/llamacpp_continuous.py). Its samples
    # depend on what shared their batch: the cache replays them, nothing else does.
    batching: Batching = Batching.fixed
    # wall-clock seconds a call (one request, or one batch) may decode for; when spent, decoding
    # stops at the next token and the samples are recorded as failed (finish_reason
    # "error: timeout ..."). null: no limit
    timeout_s: Optional[float] = None
    verbose: bool = False


@dataclass
class TransformersConfig:
    """backend=transformers: Hugging Face models in process."""

    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "float32"  # float32, bfloat16, float16
    batch_size: int = 8


@dataclass
class HttpConfig:
    """How HTTP backends talk to each endpoint."""

    concurrency: int = 16  # requests in flight per endpoint
    requests_per_minute: Optional[int] = None
    tokens_per_minute: Optional[int] = None
    timeout_s: float = 120.0
    max_retries: int = 6
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    check_endpoints: bool = True  # probe each endpoint before the first generation


@dataclass
class CacheConfig:
    mode: CacheMode = CacheMode.readwrite
    path: Optional[str] = None  # null: $COPE_HOME/generations.sqlite
    # a directory on a filesystem several machines share: generations made on one machine
    # reach the others (cope/cache_shared.py); cache.path should then be on a local disk
    shared_dir: Optional[str] = None
    sync_interval_s: float = 5.0  # how often a miss looks for other machines' generations
    # answer from rows keyed before keys carried the model's settings (cope/identity.py),
    # for a cache whose rows you know were made under this run's settings
    reuse_former_keys: bool = False


@dataclass
class BudgetConfig:
    max_usd: Optional[float] = None  # money a run may spend on backend calls
    max_large_calls: Optional[int] = None  # backend calls the large model may receive


@dataclass
class FaultsConfig:
    # a sample whose request fails for good is recorded and abstains; this many failures in a
    # row mean the endpoint is down, and the run stops cleanly (resume=true continues it)
    max_consecutive_failures: int = 10


@dataclass
class SandboxConfig:
    # how model-written programs are isolated (cope.sandbox.isolation): auto (bwrap, else
    # util-linux unshare, else refuse), bwrap, unshare, or process (unprotected: only on request)
    isolation: str = "auto"


@dataclass
class TrackerConfig:
    name: str = "none"
    project: str = "cope"
    entity: Optional[str] = None
    group: Optional[str] = None  # null: the sweep directory for multirun jobs
    mode: str = "offline"  # WANDB_MODE, when set, wins
    tags: list[str] = field(default_factory=list)


@dataclass
class CopeConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    pair: PairConfig = field(default_factory=PairConfig)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    prices: dict[str, PriceConfig] = field(default_factory=dict)
    backend: BackendConfig = field(default_factory=BackendConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    transformers: TransformersConfig = field(default_factory=TransformersConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    seed: int = 0
    resume: bool = False  # continue the run in run_dir: finished problems are kept
    concurrency: int = 4  # problems in flight at once
    progress: bool = True
    event_loop: str = "auto"  # auto (uvloop when installed), asyncio or uvloop
    runs_dir: str = "runs"
    run_dir: Optional[str] = None  # null: Hydra's output directory


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=CopeConfig)


@functools.cache
def pair_files() -> dict[str, dict[str, Any]]:
    """conf/pair/*.yaml by file name, as written there (name, roles)."""
    return {path.stem: yaml.safe_load(path.read_text()) or {}
            for path in sorted((CONFIG_DIR / "pair").glob("*.yaml"))}


def pair_label(pair: Any) -> str:
    """The pair's name, with the roles the command line gave other models than its
    conf/pair file: 'qwen-coder-cpu[large=gpt-4o-mini]'. What names a run's pair in its
    metrics, summary and tables."""
    name, roles = pair["name"], current_aliases(pair["roles"])
    on_file = pair_files().get(name, {}).get("roles")
    if on_file is None or roles == on_file:
        return name
    changed = sorted((role, alias) for role, alias in roles.items() if on_file.get(role) != alias)
    return f"{name}[{','.join(f'{role}={alias}' for role, alias in changed)}]"


def used_roles(method: MethodConfig | DictConfig) -> list[str]:
    roles: list[str] = []
    for name in method.order:
        stage = method.stages[name]
        for role in (stage.planner, stage.executor):
            if role is not None and role not in roles:
                roles.append(role)
    return roles


def validate(cfg: DictConfig | CopeConfig) -> None:
    """Every check that can be made without touching a model or a data file."""
    if cfg.tracker.name not in TRACKERS:
        raise ConfigError(unknown_name("tracker", cfg.tracker.name, TRACKERS.names()))
    task = task_class(cfg.task.name)  # an unknown name fails here
    if cfg.task.limit is not None and cfg.task.limit < 1:
        raise ConfigError(f"task.limit={cfg.task.limit}: must be at least 1 (or null for all).")
    if cfg.task.offset < 0:
        raise ConfigError(f"task.offset={cfg.task.offset}: must be 0 or more.")
    if cfg.task.ids is not None and len(cfg.task.ids) == 0:
        raise ConfigError("task.ids is an empty list: name at least one problem id, or null.")
    if cfg.task.timeout_s <= 0:
        raise ConfigError(f"task.timeout_s={cfg.task.timeout_s}: a test run needs a positive timeout.")
    if cfg.task.confidence not in ("consensus", "perplexity"):
        raise ConfigError(f"task.confidence='{cfg.task.confidence}': choose consensus or "
                          "perplexity.")
    if cfg.task.hidden_tests is not None and cfg.task.name != "mbpp":
        raise ConfigError(f"task.hidden_tests is MBPP's (an MBPP-ET file); task '{cfg.task.name}' "
                          "has none: set it to null.")
    _validate_agent(cfg.task.agent)
    if cfg.sandbox.isolation not in ISOLATIONS:
        raise ConfigError(f"sandbox.isolation={cfg.sandbox.isolation!r}: choose one of "
                          f"{', '.join(ISOLATIONS)}.")
    if cfg.backend.batch_size < 1:
        raise ConfigError(f"backend.batch_size={cfg.backend.batch_size}: must be at least 1.")
    if cfg.backend.batching == Batching.continuous and cfg.backend.batch_size < 2:
        raise ConfigError("backend.batching=continuous keeps several sequences in one batch: "
                          f"set backend.batch_size to 2 or more (it is {cfg.backend.batch_size}).")
    if cfg.backend.timeout_s is not None and cfg.backend.timeout_s <= 0:
        raise ConfigError(f"backend.timeout_s={cfg.backend.timeout_s}: must be > 0 (or null for "
                          "no limit).")
    if cfg.backend.batch_n_ctx < cfg.backend.batch_size * 256:
        raise ConfigError(
            f"backend.batch_n_ctx={cfg.backend.batch_n_ctx} leaves under 256 KV cells per sequence "
            f"for batch_size={cfg.backend.batch_size}: raise it or lower batch_size.")
    if cfg.http.concurrency < 1 or cfg.http.max_retries < 0 or cfg.http.timeout_s <= 0:
        raise ConfigError("http: concurrency must be >= 1, max_retries >= 0, timeout_s > 0.")
    if cfg.event_loop not in EVENT_LOOPS:
        raise ConfigError(f"event_loop={cfg.event_loop!r}: choose one of "
                          f"{', '.join(EVENT_LOOPS)}.")
    if cfg.concurrency < 1:
        raise ConfigError(f"concurrency={cfg.concurrency}: must be at least 1.")
    if cfg.budget.max_usd is not None and cfg.budget.max_usd < 0:
        raise ConfigError(f"budget.max_usd={cfg.budget.max_usd}: a budget cannot be negative.")
    if cfg.budget.max_large_calls is not None and cfg.budget.max_large_calls < 0:
        raise ConfigError(f"budget.max_large_calls={cfg.budget.max_large_calls}: cannot be negative.")
    if cfg.cache.shared_dir and cfg.cache.mode != "readwrite":
        raise ConfigError(f"cache.shared_dir needs cache.mode=readwrite (it is {cfg.cache.mode}).")
    if cfg.cache.sync_interval_s < 0:
        raise ConfigError(f"cache.sync_interval_s={cfg.cache.sync_interval_s}: cannot be negative.")
    if cfg.faults.max_consecutive_failures < 1:
        raise ConfigError(f"faults.max_consecutive_failures={cfg.faults.max_consecutive_failures}: "
                          "use 1 or more (the failures in a row after which a run stops).")
    if cfg.resume and not cfg.run_dir:
        try:
            from hydra.core.hydra_config import HydraConfig

            HydraConfig.get()
        except ValueError:
            raise ConfigError("resume=true needs the run_dir of the run to continue.") from None
    _validate_method(cfg.method, cfg.pair.roles, task)
    _validate_logprobs(cfg, task)
    for role in used_roles(cfg.method):
        alias = cfg.pair.roles[role]
        if alias not in cfg.models:
            raise ConfigError(f"pair.roles.{role}: " + (
                renamed(alias) or unknown_name("model alias", alias, cfg.models.keys())))
        model = cfg.models[alias]
        if model.backend not in BACKENDS:
            raise ConfigError(
                f"models.{alias}.backend: " + unknown_name("backend", model.backend, BACKENDS.names())
            )
        if model.server.kind is not None and model.backend not in ("openai", "sglang"):
            raise ConfigError(f"models.{alias}.server needs models.{alias}.backend=openai "
                              "(or sglang for an SGLang server).")
        if model.server.kind == "vllm" and model.backend != "openai":
            raise ConfigError(f"models.{alias}.server.kind=vllm serves the OpenAI API: set "
                              f"models.{alias}.backend=openai.")
        if model.price is None:
            raise ConfigError(
                f"Model '{alias}' plays the role '{role}' but has no price. Set models.{alias}.price "
                f"to one of: {', '.join(sorted(cfg.prices))} (use 'free' for a local model)."
            )
        if model.price not in cfg.prices:
            raise ConfigError(f"models.{alias}.price: " + (
                renamed(model.price) or unknown_name("price", model.price, cfg.prices.keys())))
        price = cfg.prices[model.price]
        if price.input_per_m < 0 or price.output_per_m < 0:
            raise ConfigError(f"prices.{model.price}: prices cannot be negative.")


def _validate_agent(agent: Any) -> None:
    for key in ("max_steps", "games", "world_size", "nb_objects", "quest_length"):
        if getattr(agent, key) < 1:
            raise ConfigError(f"task.agent.{key}={getattr(agent, key)}: must be at least 1.")
    if agent.history < 0:
        raise ConfigError(f"task.agent.history={agent.history}: must be 0 or more.")


def _validate_method(method: Any, roles: Any, task: Any) -> None:
    if len(method.order) == 0:
        raise ConfigError("method.order is empty: a method needs at least one stage.")
    if len(set(method.order)) != len(method.order):
        raise ConfigError(f"method.order={list(method.order)} names a stage twice.")
    for name in method.order:
        if name not in method.stages:
            raise ConfigError(
                "method.order: " + unknown_name("stage", name, method.stages.keys())
            )
        stage = method.stages[name]
        where = f"method.stages.{name}"
        if stage.votes < 1:
            raise ConfigError(f"{where}.votes={stage.votes}: a stage needs at least 1 sample.")
        if stage.plan in ("goal", "guideline", "both") and stage.planner is None:
            raise ConfigError(f"{where}: plan '{stage.plan}' needs a planner (e.g. planner=small).")
        if (stage.threshold is not None and stage.confidence != "perplexity"
                and not 0.0 <= stage.threshold <= 1.0):
            raise ConfigError(
                f"{where}.threshold={stage.threshold}: a consensus threshold lies in [0, 1]."
            )
        for temp_name in ("planner_temperature", "executor_temperature"):
            if getattr(stage, temp_name) < 0:
                raise ConfigError(f"{where}.{temp_name} cannot be negative.")
        if stage.max_tokens < 1 or stage.plan_max_tokens < 1:
            raise ConfigError(f"{where}: max_tokens and plan_max_tokens must be at least 1.")
        validate_stage_rule(stage, where, task)
        for field_name in ("planner", "executor"):
            role = getattr(stage, field_name)
            if role is not None and role not in roles:
                raise ConfigError(
                    f"{where}.{field_name}: "
                    + unknown_name("role", role, roles.keys())
                    + " Roles come from the pair (pair.roles)."
                )


def validate_stage_rule(stage: Any, where: str, task: Any) -> None:
    """A stage's style and confidence rule, for a task of class `task` (also checked by the
    engine, which may be built without a config)."""
    if stage.confidence not in rule_names():
        raise ConfigError(f"{where}.confidence='{stage.confidence}': choose one of "
                          f"{', '.join(rule_names())}.")
    if stage.style == "mixed" and stage.votes < 2:
        raise ConfigError(f"{where}: style=mixed alternates CoT and PoT samples and needs "
                          f"votes >= 2 (has {stage.votes}).")
    if stage.program_timeout_s <= 0:
        raise ConfigError(f"{where}.program_timeout_s={stage.program_timeout_s}: must be > 0.")
    rule_for(stage.confidence, task).check(stage, where, task)
    if stage.style not in task.styles:
        raise ConfigError(f"{where}.style={stage.style}: task '{task.name}' offers "
                          f"{', '.join(task.styles)}.")


def _validate_logprobs(cfg: Any, task: Any) -> None:
    """A rule that reads per-token logprobs (perplexity) needs its executor's backend to
    report them."""
    for name in cfg.method.order:
        stage = cfg.method.stages[name]
        if not rule_for(stage.confidence, task).wants_logprobs:
            continue
        alias = cfg.pair.roles.get(stage.executor)
        model = cfg.models.get(alias) if alias is not None else None
        if model is not None and model.backend not in LOGPROB_BACKENDS:
            raise ConfigError(
                f"method.stages.{name}: confidence={stage.confidence} needs per-token logprobs, "
                f"but its executor '{alias}' runs on backend '{model.backend}', which reports "
                f"none. Use one of {', '.join(LOGPROB_BACKENDS)}, or another confidence rule.")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False,  # type: ignore[return-value]
                                  enum_to_str=True)
