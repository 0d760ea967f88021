"""Confidence rules are one registry: each module of cope.confidence is a rule, and a new rule
is one new module and one config value."""

from __future__ import annotations

import asyncio

import pytest

import cope.confidence
from cope.confidence import base, load_rule, rule_for, rule_names
from cope.config import validate
from cope.errors import ConfigError
from cope.tasks.code_data import MBPP

from conftest import compose_config
from scripted import PROBLEM, InlineMath, build, cope_responder, cope_stages

NEW_RULE = '''
from dataclasses import replace

from cope.confidence.base import Decision, Rule


class Unanimous(Rule):
    """Confidence 1 only when every sample gives the top answer."""

    name = "unanimous"

    async def decide(self, samples):
        vote = await samples.majority()
        agreed = len(vote.support) == len(samples.generations)
        return Decision(replace(vote, confidence=1.0 if agreed else 0.0))


RULE = Unanimous()
'''


def test_every_module_names_its_rule():
    assert rule_names() == ("agreement", "consensus", "perplexity", "scorer", "test_filter")
    assert all(load_rule(name).name == name for name in rule_names())


def test_consensus_is_each_tasks_own_measure():
    assert rule_for("consensus", InlineMath).name == "consensus"
    assert rule_for("consensus", MBPP).name == "test_filter"
    assert rule_for("scorer", MBPP).name == "scorer"


def test_an_unknown_rule_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="choose one of agreement, consensus, perplexity"):
        validate(compose_config(["method.stages.s1.confidence=unanimus"]))
    with pytest.raises(ConfigError, match="Did you mean 'consensus'"):
        load_rule("concensus")


@pytest.fixture
def rule_package(tmp_path, monkeypatch):
    """cope.confidence with one more module on its path, as a researcher would add it."""
    extra = tmp_path / "rules"
    extra.mkdir()
    monkeypatch.setattr(cope.confidence, "__path__", [*cope.confidence.__path__, str(extra)])
    base.rule_names.cache_clear()
    base.load_rule.cache_clear()
    yield extra
    base.rule_names.cache_clear()
    base.load_rule.cache_clear()


def test_a_new_rule_is_one_module_and_one_config_value(rule_package):
    (rule_package / "unanimous.py").write_text(NEW_RULE)
    assert "unanimous" in rule_names()
    validate(compose_config(["method.stages.s1.confidence=unanimous"]))
    # 7 of 8 agree: consensus 0.875 passes tau1 = 0.75, unanimity does not
    s1 = ["9"] * 7 + ["8"]
    for confidence, resolved in (("consensus", "s1"), ("unanimous", "s2")):
        stages = cope_stages(f"method.stages.s1.confidence={confidence}")
        method, _ = build(stages, cope_responder(s1=s1, s2=["9"] * 8))
        result = asyncio.run(method.solve(PROBLEM))
        assert result.resolved_stage == resolved
        assert result.stages[0].to_json()["consensus"] == (0.875 if confidence == "consensus"
                                                           else 0.0)
