"""Every experiment composes, and every job of its sweep composes and validates."""

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from cope.config import validate
from cope.errors import ConfigError

from conftest import CONF_DIR, compose_config, skip_if_missing_options

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def _jobs(cfg):
    params = dict(cfg.hydra.sweeper.params or {})
    axes = [[f"{key}={value.strip()}" for value in str(values).split(",")]
            for key, values in params.items()]
    return [list(job) for job in itertools.product(*axes)]


def sweep_jobs(experiment):
    """The override lists of the jobs a multirun experiment launches (one job otherwise)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return _jobs(compose(config_name="config", overrides=[f"experiment={experiment}"],
                             return_hydra_config=True))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_job_of_every_experiment_validates(experiment):
    skip_if_missing_options("experiment", experiment)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        jobs = _jobs(compose(config_name="config", overrides=[f"experiment={experiment}"],
                             return_hydra_config=True))
        assert jobs
        for job in jobs:
            validate(compose(config_name="config", overrides=[f"experiment={experiment}", *job]))


def test_table3_sweeps_the_baselines_and_cope():
    jobs = sweep_jobs("table3")
    assert [job[0].split("=")[1] for job in jobs] == [
        "small_single", "small_majority", "large", "mot_vote", "mot_verify", "abc", "cope",
        "frugalgpt"]
    cfg = compose_config(["experiment=cpu_table3", "method=abc"])
    assert dict(cfg.pair.roles) == {"small": "qwen-coder-0_5b", "large": "qwen-coder-1_5b",
                                    "tiny": "smollm2-135m"}


def test_table5_is_mbpp_with_the_baselines():
    text = (CONF_DIR / "experiment" / "table5.yaml").read_text()
    assert "override /task: mbpp" in text
    assert "method: small_single,small_majority,large,abc,cope,frugalgpt" in text


def test_ablation_sweeps_cover_stage_lists_roles_and_plan_types():
    stages = {job[0].split("=")[1] for job in sweep_jobs("ablation_stages")}
    assert stages == {"large", "cope", "cope_s1s2", "cope_s2s3", "cope_s1s3", "cope_s1",
                      "cope_s2", "cope_s3"}
    plan_jobs = sweep_jobs("cpu_ablation_plan_type")
    assert len(plan_jobs) == 16
    cfg = compose_config(["experiment=cpu_ablation_plan_type", *plan_jobs[-1]])
    assert (cfg.method.stages.s1.plan, cfg.method.stages.s2.plan) == ("none", "none")
    pairs = {job[0] for job in sweep_jobs("ablation_pairs")}
    assert len(pairs) == 4


def test_reversed_roles_and_single_stage_methods():
    cfg = compose_config(["method=cope_reversed"])
    s2 = cfg.method.stages.s2
    assert (s2.planner, s2.executor, s2.plan) == ("small", "large", "guideline")
    assert cfg.method.stages.s1.planner == "small" and cfg.method.stages.s3.executor == "large"
    for name, order in (("cope_s1", ["s1"]), ("cope_s2", ["s2"]), ("cope_s3", ["s3"])):
        assert list(compose_config([f"method={name}"]).method.order) == order


def test_abc_needs_a_pair_with_a_tiny_role():
    with pytest.raises(ConfigError, match="Unknown role 'tiny'"):
        validate(compose_config(["method=abc"]))
    validate(compose_config(["method=abc", "pair=tiers-cpu"]))
    validate(compose_config(["method=abc", "+pair.roles.tiny=smollm2-135m"]))


@pytest.mark.parametrize("overrides, message", [
    (["method=mot_vote", "method.votes=1"], "needs votes >= 2"),
    (["method=mot_verify", "method.stages.mot.style=cot"], "set style=mixed"),
    (["method=mot_vote", "method.stages.mot.confidence=vibes"], "confidence='vibes'"),
    (["method=frugalgpt", "method.stages.small.scorer=null"], "needs method.stages.small.scorer"),
    (["method=frugalgpt", "method.stages.small.style=pot"], "set style=cot"),
    (["method=mot_vote", "method.stages.mot.program_timeout_s=0"], "program_timeout_s=0"),
])
def test_baseline_stage_fields_are_checked(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides))
    assert message in str(info.value)
