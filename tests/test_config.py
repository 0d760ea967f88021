"""Composition of every config group and the checks made before any generation."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR, compose_config, skip_if_missing_options
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from cope.config import validate
from cope.errors import ConfigError


def group_options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group, option", [
    (group, option) for group in ("task", "method", "pair", "backend", "tracker", "experiment")
    for option in group_options(group)])
def test_every_option_of_every_group_composes(group, option):
    skip_if_missing_options(group, option)
    cfg = compose_config([f"{group}={option}"])
    assert cfg.method.order, f"{group}={option} composed without stages"


def test_every_packaged_and_api_model_has_a_price():
    cfg = compose_config()
    assert set(group_options("model")) == set(cfg.models)
    for alias, model in cfg.models.items():
        assert model.price in cfg.prices, alias
    assert cfg.models["qwen-coder-1_5b"].price == "gpt-4o-mini"
    assert cfg.prices["gpt-4o"].input_per_m == 2.5 and cfg.prices["gpt-4o"].output_per_m == 10.0
    assert cfg.prices["gpt-4_1"].output_per_m == 8.0
    assert cfg.prices["gemini-2_0-flash"].input_per_m == 0.1


def test_cope_defaults_match_the_paper():
    cfg = compose_config(["method=cope"])
    s1, s2, s3 = (cfg.method.stages[n] for n in ("s1", "s2", "s3"))
    assert (s1.votes, s1.threshold, s1.planner_temperature, s1.executor_temperature) == (8, 0.75, 0.8, 0.4)
    assert (s2.votes, s2.threshold, s2.planner_temperature, s2.executor_temperature) == (8, 0.5, 0.8, 0.8)
    assert (s1.plan, s2.plan, s3.plan) == ("goal", "guideline", "carry")
    assert (s1.planner, s1.executor, s2.planner, s2.executor, s3.executor) == (
        "small", "small", "large", "small", "large")
    assert s2.keep_previous_plan and not s2.plan_per_sample and s1.plan_per_sample
    assert s3.executor_temperature == 0.0 and s3.threshold is None


def test_quickstart_is_ten_gsm8k_problems_on_the_cpu_pair():
    cfg = compose_config(["experiment=quickstart"])
    assert cfg.task.name == "gsm8k" and cfg.task.limit == 10
    assert dict(cfg.pair.roles) == {"small": "qwen-coder-0_5b", "large": "qwen-coder-1_5b"}
    assert cfg.backend.name == "llamacpp" and cfg.method.name == "cope"


def test_quickstart_keeps_every_problem_in_flight_in_one_continuous_batch():
    cfg = compose_config(["experiment=quickstart"])
    assert cfg.backend.batching == "continuous" and cfg.concurrency >= cfg.task.limit
    # every stage-1 vote of every problem fits in the batch, each with room for its prompt
    assert cfg.backend.batch_size >= cfg.method.votes * 4
    assert cfg.backend.batch_n_ctx // cfg.backend.batch_size >= 1024
    validate(cfg)


def test_a_misspelt_key_fails_at_composition():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_config(["method.tau_1=0.5"])
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_config(["method.stages.s1.vote=4"])


def test_unknown_group_option_lists_the_valid_ones():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(["method=copee"])
    assert "cope" in str(info.value) and "small_majority" in str(info.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.name=gsm8"], "Did you mean 'gsm8k'"),
        (["task.limit=0"], "task.limit=0"),
        (["task.ids=[]"], "task.ids is an empty list"),
        (["method.votes=0"], "at least 1 sample"),
        (["method.tau1=1.5"], "lies in [0, 1]"),
        (["method.stages.s1.planner=medium"], "Unknown role 'medium'"),
        (["method.order=[s1,s9]"], "Unknown stage 's9'"),
        (["method.order=[]"], "at least one stage"),
        (["pair.roles.large=gpt-5"], "Unknown model alias 'gpt-5'"),
        (["backend.name=vllm"], "Unknown backend 'vllm'"),
    ],
)
def test_validation_errors_name_the_fix(overrides, message):
    cfg = compose_config(overrides)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert message in str(info.value)


@pytest.mark.parametrize("override, choices", [
    ("method.threshold_op=gte", "[gt, ge]"),
    ("method.stages.s1.plan=sketch", "[goal, guideline, both, none, carry]"),
    ("method.stages.s1.style=poem", "[cot, pot, mixed]"),
    ("cache.mode=sometimes", "[readwrite, readonly, survey, off]"),
])
def test_a_value_outside_a_closed_set_fails_as_the_config_is_composed(override, choices):
    with pytest.raises(ConfigCompositionException) as info:
        compose_config([override])
    assert f"expected one of {choices}" in str(info.value.__cause__ or info.value)


@pytest.mark.parametrize("price, message", [(None, "has no price"), ("gpt-5", "Unknown price 'gpt-5'")])
def test_a_role_without_a_valid_price_is_an_error(price, message):
    cfg = compose_config()
    cfg.models["qwen-coder-1_5b"].price = price
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert message in str(info.value) and "qwen-coder-1_5b" in str(info.value)


def test_threshold_of_one_is_allowed_with_ge():
    validate(compose_config(["method.tau1=1.0", "method.threshold_op=ge"]))


def test_default_config_validates():
    validate(compose_config())


def test_conf_dir_is_the_projects():
    assert (Path(CONF_DIR) / "config.yaml").is_file()


def test_every_shipped_model_and_price_name_can_be_overridden_field_by_field():
    cfg = compose_config()
    dotted = [name for name in [*cfg.models, *cfg.prices] if "." in name]
    assert dotted == []
    cfg = compose_config(["pair=qwen1.5b+gpt-4o-mini", "models.qwen2_5-1_5b.base_url=http://gpu:30000",
                          "models.qwen2_5-1_5b.server.kind=null", "prices.gpt-4_1.input_per_m=1.5"])
    assert cfg.models[cfg.pair.roles.small].base_url == "http://gpu:30000"
    assert cfg.models[cfg.pair.roles.small].server.kind is None
    assert cfg.prices["gpt-4_1"].input_per_m == 1.5


def test_an_alias_with_a_dot_is_reached_with_the_merge_form():
    cfg = compose_config(["+models={my.model:{identity:api:mine,backend:openai,price:free}}",
                          "models={my.model:{base_url:http://host:8000/v1}}"])
    assert cfg.models["my.model"].base_url == "http://host:8000/v1"
    assert cfg.models["my.model"].identity == "api:mine"  # merged, not replaced


@pytest.mark.parametrize("old,new", [("qwen-coder-0.5b", "qwen-coder-0_5b"), ("gpt-4.1", "gpt-4_1")])
def test_a_renamed_alias_is_refused_with_its_new_name(old, new):
    cfg = compose_config([f"pair.roles.small={old}"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert f"'{old}' is now '{new}'" in str(info.value)


def test_an_override_of_a_renamed_alias_is_refused_with_its_new_name_before_hydra():
    from conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "cope.cli", "models.qwen2.5-1.5b.base_url=http://x"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "'qwen2.5-1.5b' is now 'qwen2_5-1_5b'" in done.stderr and "Lexer" not in done.stderr


def test_the_scorer_training_refuses_renamed_aliases_too():
    from cope.baselines.frugalgpt import train

    with pytest.raises(ConfigError, match="'qwen-coder-1.5b' is now 'qwen-coder-1_5b'"):
        train(["models.qwen-coder-1.5b.price=free"])
