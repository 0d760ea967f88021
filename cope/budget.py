"""Spending limits: a run stops cleanly before a backend call could take it over budget.

Only backend calls spend money (a cached generation is free). Before a batch is sent, each
call reserves its worst case: its prompt (over-estimated from its characters) plus its full
max_tokens; after it returns, the reservation is replaced by what it actually cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from cope.cost import PriceBook
from cope.errors import CopeError
from cope.samples import Completion, GenerationRequest, SampleTag

# a token holds about four characters of English; two is a safe over-estimate, and chat
# templates add a few tokens per message
CHARS_PER_TOKEN_LOW = 2
TEMPLATE_TOKENS_PER_MESSAGE = 8


class BudgetExceeded(CopeError):
    """The next backend call could exceed budget.max_usd or budget.max_large_calls."""


@dataclass
class Reservation:
    usd: float
    large: bool


def worst_case_prompt_tokens(request: GenerationRequest) -> int:
    return sum(len(content) // CHARS_PER_TOKEN_LOW + TEMPLATE_TOKENS_PER_MESSAGE
               for _, content in request.messages)


class Budget:
    def __init__(self, prices: PriceBook, max_usd: float | None = None,
                 max_large_calls: int | None = None) -> None:
        self.prices = prices
        self.max_usd = max_usd
        self.max_large_calls = max_large_calls
        self.spent_usd = 0.0
        self.large_calls = 0
        self._reserved_usd = 0.0
        self._reserved_large = 0

    def reserve(self, request: GenerationRequest, tag: SampleTag) -> Reservation:
        # the worst case matters only against a money limit
        worst = (0.0 if self.max_usd is None else
                 self.prices.cost(request.model, worst_case_prompt_tokens(request),
                                  request.params.max_tokens))
        large = tag.model_role == "large"
        if self.max_usd is not None and self.spent_usd + self._reserved_usd + worst > self.max_usd:
            raise BudgetExceeded(
                f"budget.max_usd={self.max_usd}: spent ${self.spent_usd:.6f}, and the next call "
                f"to '{request.model}' could cost up to ${worst:.6f}."
            )
        if large and self.max_large_calls is not None and (
                self.large_calls + self._reserved_large + 1 > self.max_large_calls):
            raise BudgetExceeded(
                f"budget.max_large_calls={self.max_large_calls}: the large model has had "
                f"{self.large_calls} calls."
            )
        self._reserved_usd += worst
        self._reserved_large += int(large)
        return Reservation(worst, large)

    def settle(self, reservation: Reservation, request: GenerationRequest,
               completion: Completion) -> None:
        self._reserved_usd -= reservation.usd
        self._reserved_large -= int(reservation.large)
        self.spent_usd += self.prices.cost(request.model, completion.prompt_tokens,
                                           completion.completion_tokens)
        self.large_calls += int(reservation.large)

    def release(self, reservation: Reservation) -> None:
        """A reserved call that was never made."""
        self._reserved_usd -= reservation.usd
        self._reserved_large -= int(reservation.large)
