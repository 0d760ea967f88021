"""Significance tests checked against scipy and statsmodels."""

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from analysis.stats import (
    bootstrap_mean_interval, compare, holm, mcnemar_exact, mean_std, pair_runs, paired_bootstrap,
    wilson_interval,
)


def paired(seed, n=200, p_a=0.7, p_b=0.6):
    rng = np.random.default_rng(seed)
    return rng.random(n) < p_a, rng.random(n) < p_b


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_matches_statsmodels(seed):
    a, b = paired(seed, n=60 + 20 * seed)
    ours = mcnemar_exact(a, b)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    theirs = mcnemar(table, exact=True)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert (ours.only_a, ours.only_b) == (table[0][1], table[1][0])


def test_mcnemar_edge_cases():
    assert mcnemar_exact([True, False], [True, False]).p_value == 1.0
    assert mcnemar_exact([True] * 10, [False] * 10).p_value == pytest.approx(2 * 0.5 ** 10)
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (37, 50), (50, 50), (412, 500)])
def test_wilson_matches_statsmodels(k, n):
    low, high = wilson_interval(k, n)
    ref_low, ref_high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert low == pytest.approx(ref_low, abs=1e-12) and high == pytest.approx(ref_high, abs=1e-12)


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(3)
    p = rng.random(25) ** 3
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist())
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_paired_bootstrap_covers_the_truth_and_is_seeded():
    a, b = paired(0, n=400)
    cost_a, cost_b = np.full(400, 2.0), np.full(400, 5.0)
    result = paired_bootstrap(a, b, cost_a, cost_b, resamples=2000, seed=1)
    diff = result["accuracy_difference"]
    assert diff.estimate == pytest.approx(a.mean() - b.mean())
    assert diff.low < diff.estimate < diff.high
    assert result["cost_ratio"].estimate == pytest.approx(0.4)
    assert result["cost_ratio"].low == pytest.approx(0.4) == result["cost_ratio"].high
    again = paired_bootstrap(a, b, cost_a, cost_b, resamples=2000, seed=1)
    assert again["accuracy_difference"] == diff
    # the interval's width shrinks like 1/sqrt(n): a quarter of the data, about twice as wide
    small = paired_bootstrap(a[:100], b[:100], cost_a[:100], cost_b[:100], resamples=2000, seed=1)
    width = lambda r: r["accuracy_difference"].high - r["accuracy_difference"].low  # noqa: E731
    assert 1.4 < width(small) / width(result) < 2.8


def test_mean_std_uses_the_sample_deviation():
    mean, std = mean_std([74.4, 73.2, 75.0, 74.8, 74.6])
    assert mean == pytest.approx(np.mean([74.4, 73.2, 75.0, 74.8, 74.6]))
    assert std == pytest.approx(np.std([74.4, 73.2, 75.0, 74.8, 74.6], ddof=1))
    assert mean_std([1.0]) == (1.0, 0.0)


def test_paired_bootstrap_matches_scipy():
    """Same resampling stream, same percentile rule: scipy's interval, to the last bit."""
    from scipy import stats

    rng = np.random.default_rng(11)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.6
    cost_a, cost_b = rng.random(300), rng.random(300) + 0.5
    ours = paired_bootstrap(a, b, cost_a, cost_b, resamples=3000, seed=5)
    for key, data, statistic in [
        ("accuracy_difference", (a.astype(float), b.astype(float)),
         lambda x, y, axis: x.mean(axis) - y.mean(axis)),
        ("cost_ratio", (cost_a, cost_b), lambda x, y, axis: x.sum(axis) / y.sum(axis)),
    ]:
        theirs = stats.bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=3000,
                                 method="percentile", rng=np.random.default_rng(5))
        assert ours[key].low == pytest.approx(theirs.confidence_interval.low, abs=1e-12)
        assert ours[key].high == pytest.approx(theirs.confidence_interval.high, abs=1e-12)


def test_bootstrap_mean_interval_matches_scipy():
    from scipy import stats

    x = np.random.default_rng(4).random(120)
    ours = bootstrap_mean_interval(x, resamples=2500, seed=2)
    theirs = stats.bootstrap((x,), np.mean, n_resamples=2500, method="percentile",
                             rng=np.random.default_rng(2)).confidence_interval
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), abs=1e-12)
    assert ours.estimate == pytest.approx(x.mean())


def test_compare_pairs_runs_on_their_shared_problems():
    """A partial run is compared on the problems both finished, in matching order."""
    def problems(flags, costs, ids):
        return [{"id": i, "correct": f, "cost_usd": c} for i, f, c in zip(ids, flags, costs)]

    a = problems([True, True, False, True, True], [1, 1, 1, 1, 1], ["1", "2", "3", "4", "5"])
    b = problems([False, True, True], [4, 4, 2], ["4", "2", "3"])  # unfinished, other order
    pairing = pair_runs(a, b)
    assert pairing.ids == ["2", "3", "4"] and pairing.n == 3
    assert pairing.correct_b.tolist() == [True, True, False]
    assert pairing.cost_b.tolist() == [4, 2, 4]
    result = compare(a, b, resamples=500)
    assert result["n"] == 3 and (result["only_a"], result["only_b"]) == (1, 1)
    assert result["accuracy_a"] == pytest.approx(2 / 3) and result["accuracy_b"] == pytest.approx(2 / 3)
    assert result["cost_ratio"]["estimate"] == pytest.approx(3 / 10)
    assert result["accuracy_a_ci"] == pytest.approx(proportion_confint(2, 3, method="wilson"))
    assert compare(a, problems([True], [1], ["9"]))["n"] == 0
    # a free reference has no cost ratio
    assert "cost_ratio" not in compare(a, problems([True], [0.0], ["1"]), resamples=100)
