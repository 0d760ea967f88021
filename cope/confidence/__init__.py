"""Confidence rules: how a stage's samples become an answer, a confidence and a decision.

`method.stages.X.confidence: NAME` chooses the rule of module cope.confidence.NAME (its
`RULE`, a cope.confidence.base.Rule). A new rule is one new module here.

`consensus` is each task's own measure of agreement (`Task.own_rule`): the top answer's share
of the votes, or for programs the visible tests (test_filter).
"""

from __future__ import annotations

from cope.confidence.base import (
    Decision,
    Rule,
    StageSamples,
    load_rule,
    passes,
    rule_names,
)
from cope.confidence.scorer import Scorer, scored_response

__all__ = ["Decision", "Rule", "Scorer", "StageSamples", "load_rule", "passes", "rule_for",
           "rule_names", "scored_response"]


def rule_for(name: str, task_class) -> Rule:
    """The rule a stage's `confidence` names, for a task of this class."""
    rule = load_rule(name)
    return load_rule(task_class.own_rule) if rule.name == "consensus" else rule
