"""API cost from recorded token usage and a price table (USD per 1M tokens).

Cost is recomputed from tokens, never stored as the only truth, so a new price needs no rerun.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from cope.errors import ConfigError

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    input_per_m: float
    output_per_m: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / PER_MILLION


class PriceBook:
    """Prices of model aliases, resolved from the models' `price` keys and the price table."""

    def __init__(self, models, prices) -> None:
        self._by_alias: dict[str, Price] = {}
        for alias, model in models.items():
            if model.price is not None and model.price in prices:
                entry = prices[model.price]
                self._by_alias[alias] = Price(float(entry.input_per_m), float(entry.output_per_m))

    def price(self, alias: str) -> Price:
        try:
            return self._by_alias[alias]
        except KeyError:
            raise ConfigError(f"Model '{alias}' has no price (set models.{alias}.price).") from None

    def cost(self, alias: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.price(alias).cost(prompt_tokens, completion_tokens)


class CostLedger:
    """Sums cost and tokens by stage, by model and by role."""

    def __init__(self) -> None:
        self.total = 0.0
        self.by_stage: dict[str, float] = defaultdict(float)
        self.by_model: dict[str, float] = defaultdict(float)
        self.by_role: dict[str, float] = defaultdict(float)
        self.calls_by_role: dict[str, int] = defaultdict(int)
        self.tokens_by_model: dict[str, dict[str, int]] = defaultdict(lambda: {"prompt": 0, "completion": 0})

    def add(self, stage: str, model: str, role: str, cost: float, prompt_tokens: int,
            completion_tokens: int) -> None:
        self.total += cost
        self.by_stage[stage] += cost
        self.by_model[model] += cost
        self.by_role[role] += cost
        self.calls_by_role[role] += 1
        self.tokens_by_model[model]["prompt"] += prompt_tokens
        self.tokens_by_model[model]["completion"] += completion_tokens

    def merge(self, other: "CostLedger") -> None:
        self.total += other.total
        for mine, theirs in ((self.by_stage, other.by_stage), (self.by_model, other.by_model),
                             (self.by_role, other.by_role), (self.calls_by_role, other.calls_by_role)):
            for key, value in theirs.items():
                mine[key] += value
        for model, tokens in other.tokens_by_model.items():
            for kind, count in tokens.items():
                self.tokens_by_model[model][kind] += count

    def to_json(self) -> dict:
        return {
            "total_usd": self.total,
            "by_stage_usd": dict(self.by_stage),
            "by_model_usd": dict(self.by_model),
            "by_role_usd": dict(self.by_role),
            "calls_by_role": dict(self.calls_by_role),
            "tokens_by_model": {k: dict(v) for k, v in self.tokens_by_model.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "CostLedger":
        ledger = cls()
        ledger.total = float(data["total_usd"])
        for mine, key in ((ledger.by_stage, "by_stage_usd"), (ledger.by_model, "by_model_usd"),
                          (ledger.by_role, "by_role_usd"), (ledger.calls_by_role, "calls_by_role")):
            mine.update(data.get(key, {}))
        for model, tokens in data.get("tokens_by_model", {}).items():
            ledger.tokens_by_model[model].update(tokens)
        return ledger


def per_million_problems(total_usd: float, n_problems: int) -> float:
    """The paper's unit: USD per million problems, from the mean cost of a problem."""
    return total_usd / n_problems * PER_MILLION if n_problems else 0.0
