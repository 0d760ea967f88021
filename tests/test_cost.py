"""Cost arithmetic: per-token prices, ledgers and the paper's USD per million problems."""

import pytest

from cope.cost import CostLedger, Price, PriceBook, per_million_problems
from cope.errors import ConfigError

from conftest import compose_config


def test_price_per_million_tokens():
    gpt4o = Price(2.50, 10.00)
    assert gpt4o.cost(1_000_000, 0) == pytest.approx(2.50)
    assert gpt4o.cost(0, 1_000_000) == pytest.approx(10.00)
    assert gpt4o.cost(1200, 300) == pytest.approx((1200 * 2.5 + 300 * 10) / 1e6)


def test_price_book_from_config():
    cfg = compose_config()
    book = PriceBook(cfg.models, cfg.prices)
    assert book.cost("qwen-coder-0_5b", 10_000, 10_000) == 0.0
    # the packaged large model stands in at GPT-4o-mini's price
    assert book.cost("qwen-coder-1_5b", 1000, 500) == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    assert book.cost("gemini-2_0-flash", 2_000_000, 1_000_000) == pytest.approx(0.2 + 0.4)


def test_unpriced_alias_is_an_error():
    cfg = compose_config()
    cfg.models["gpt-4o"].price = None
    with pytest.raises(ConfigError, match="gpt-4o"):
        PriceBook(cfg.models, cfg.prices).cost("gpt-4o", 1, 1)


def test_ledger_breakdowns_and_merge():
    a, b = CostLedger(), CostLedger()
    a.add("s1", "small", "small", 0.0, 100, 50)
    a.add("s2", "large", "large", 0.002, 300, 100)
    b.add("s3", "large", "large", 0.001, 200, 40)
    a.merge(b)
    assert a.total == pytest.approx(0.003)
    assert a.by_stage == {"s1": 0.0, "s2": 0.002, "s3": pytest.approx(0.001)}
    assert a.by_role["large"] == pytest.approx(0.003)
    assert a.calls_by_role == {"small": 1, "large": 2}
    assert a.tokens_by_model["large"] == {"prompt": 500, "completion": 140}


def test_usd_per_million_problems():
    # the paper's Table 3 unit: 212 USD per million problems is 0.000212 USD per problem
    assert per_million_problems(0.000212 * 500, 500) == pytest.approx(212.0)
    assert per_million_problems(0.0, 0) == 0.0
