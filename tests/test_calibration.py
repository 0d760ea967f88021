"""cope calibrate: pools, exact and free evaluation of every configuration, the guarantee.

Pools and runs are real cope runs with a scripted backend whose answers are right with a
probability that depends on the model, the plan and the problem (tests/sweep.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import stats

from cope.backends.scripted import ScriptedBackend
from cope.calibration import cli as calibrate
from cope.calibration.experiment import experiment
from cope.calibration.pools import Pool, Structure, generate, survey
from cope.calibration.risk import (
    betting_pvalue,
    betting_pvalues,
    betting_upper_bound,
    certification_order,
    clopper_pearson,
    fewest_problems,
    fixed_sequence,
    pareto_front,
    split,
)
from cope.calibration.search import Configuration, configurations, evaluate
from cope.calibration.targets import parse_target
from cope.errors import ConfigError
from cope.runner import run

from conftest import compose_config
from sweep import gold_aware_responder, gsm8k_golds

DEV = ["task.offset=200", "task.limit=40"]


@pytest.fixture(scope="module")
def backend():
    return ScriptedBackend(gold_aware_responder(gsm8k_golds()))


def base(root, *overrides):
    return ["pair=qwen-coder-cpu", "backend.name=scripted", f"cache.path={root / 'gen.sqlite'}",
            "progress=false", *overrides]


@pytest.fixture(scope="module")
def pools(tmp_path_factory, backend, cope_home):
    """A COPE pool and large alone on 40 dev problems, sharing one cache."""
    root = tmp_path_factory.mktemp("pools")
    run(compose_config(base(root, *DEV, "experiment=pool", "method=cope",
                            f"run_dir={root / 'cope'}")), backends={"scripted": backend})
    run(compose_config(base(root, *DEV, "method=large", f"run_dir={root / 'large'}")),
        backends={"scripted": backend})
    return root


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_pool_records_every_stage_and_answers_as_a_run_does(pools, backend, tmp_path):
    ordinary = run(compose_config(base(pools, *DEV, "method=cope", f"run_dir={tmp_path / 'r'}",
                                       "cache.mode=readonly")))
    pool_rows = read(pools / "cope" / "problems.jsonl")
    assert all(len(row["stages"]) == 3 for row in pool_rows)
    assert json.loads((pools / "cope" / "metrics.json").read_text())["pool"] is True
    escalated = 0
    for mine, theirs in zip(pool_rows, ordinary.problems, strict=True):
        assert (mine["answer"], mine["resolved_stage"], mine["correct"]) == (
            theirs["answer"], theirs["resolved_stage"], theirs["correct"])
        # a run's stages are the pool's up to the one that answered, field for field
        assert mine["stages"][:len(theirs["stages"])] == theirs["stages"]
        escalated += len(theirs["stages"]) < 3
    assert 0 < escalated < len(pool_rows)  # some problems stopped early, the pool ran on
    assert ordinary.metrics["backend_calls"] == 0  # everything the run needs is in the pool


@pytest.mark.parametrize("method,overrides,structure,thresholds,op", [
    ("abc", ["pair=tiers-cpu"], Structure(3, ("tiny", "small", "large")), (2 / 3, 1.0, None),
     "ge"),
    ("abc", ["pair=tiers-cpu"], Structure(3, ("small", "large")), (1 / 3, None), "gt"),
    ("mot_verify", [], Structure(8, ("mot", "large")), (0.5, None), "gt"),
])
def test_the_baselines_calibrate_on_the_same_terms(pools, backend, tmp_path, method, overrides,
                                                     structure, thresholds, op):
    """ABC and MoT pools: the evaluation of a configuration is a run of it, exactly."""
    pool_dir = tmp_path / method
    run(compose_config(base(tmp_path, *DEV, "experiment=pool", f"method={method}", *overrides,
                            f"run_dir={pool_dir}")), backends={"scripted": backend})
    pool = Pool.load(pool_dir)
    table = survey(pool, structure, tmp_path)
    assert table.covered
    configuration = Configuration(structure, thresholds, op)
    fast = evaluate(table, [configuration])
    path = tmp_path / "calibrated" / "experiment" / "calibrated_cope.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(experiment(pool, configuration, {"ids": None, "offset": 0, "limit": 5}, "x"))
    replayed = run_experiment(tmp_path / "calibrated", tmp_path, "replayed", "cache.mode=readonly")
    assert replayed.metrics["backend_calls"] == 0
    assert [row["correct"] for row in replayed.problems] == fast.correct[0].tolist()
    assert [row["cost_usd"] for row in replayed.problems] == pytest.approx(fast.cost[0].tolist())


def test_a_vote_count_the_method_refuses_is_left_out_with_its_reason(pools, backend, tmp_path,
                                                                      capsys):
    # MoT's mixed style alternates CoT and PoT samples: one vote is no valid configuration
    pool_dir = tmp_path / "mot_verify"
    run(compose_config(base(pools, *DEV, "experiment=pool", "method=mot_verify",
                            f"run_dir={pool_dir}")), backends={"scripted": backend})
    code = calibrate.main([str(pool_dir), "--reference", str(pools / "large"),
                           "--out", str(tmp_path / "out"), "--scratch", str(tmp_path),
                           "--target", "accuracy>=large-0.45", "--search", "thresholds,votes",
                           "--votes", "1,2", "--test", "task.limit=100"])
    out = capsys.readouterr().out
    assert code == 0, out
    method = json.loads((tmp_path / "out" / "calibration.json").read_text())["methods"][0]
    assert method["structures"] == ["votes=2 order=mot,large"]
    [left] = method["left_out"]
    assert left["structure"] == "votes=1 order=mot,large" and "votes >= 2" in left["invalid"]
    assert "left out votes=1 order=mot,large: not a valid configuration" in out


def test_a_pool_needs_early_exit_off(pools):
    with pytest.raises(ConfigError, match="experiment=pool"):
        Pool.load(pools / "large")


def write_experiment(pool, configuration, directory):
    path = directory / "experiment" / "calibrated_cope.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(experiment(pool, configuration, {"ids": None, "offset": 0, "limit": 5},
                               "a test"))
    return directory


def run_experiment(directory, tmp_path, name, *overrides, backends=None):
    cfg = compose_config([f"hydra.searchpath=[file://{directory}]", "experiment=calibrated_cope",
                          *DEV, f"run_dir={tmp_path / name}", *overrides])
    return run(cfg, backends=backends)


CONFIGS = [  # (votes, order, thresholds, op)
    (8, ("s1", "s2", "s3"), (0.75, 0.5, None), "gt"),
    (8, ("s1", "s2", "s3"), (0.5, 0.875, None), "ge"),
    (8, ("s1", "s3"), (0.625, None), "gt"),
    (4, ("s1", "s2", "s3"), (0.5, 0.25, None), "ge"),
    (8, ("s2", "s3"), (0.75, None), "ge"),
]


@pytest.mark.parametrize("votes,order,thresholds,op", CONFIGS)
def test_evaluation_from_the_pool_is_a_real_run_exactly(pools, backend, tmp_path, votes, order,
                                                        thresholds, op):
    """The fast evaluation's correctness and cost equal a run of the written experiment
    replayed from the pool, whose problems.jsonl is byte-identical to a run that generated
    everything afresh."""
    copied = tmp_path / "pool"
    shutil.copytree(pools / "cope", copied)
    shutil.copy(pools / "gen.sqlite", tmp_path / "gen.sqlite")
    pool = Pool.load(copied, tmp_path / "gen.sqlite")
    structure = Structure(votes, order)
    table = survey(pool, structure, tmp_path)
    if not table.covered:  # another g^S reaches stage 2: made once, then the pool covers it
        missing = sum(table.missing.values())
        metrics = generate(pool, structure, tmp_path, backends={"scripted": backend})
        assert metrics["backend_calls"] == missing
        table = survey(pool, structure, tmp_path)
    assert table.covered and table.ids == pool.ids
    configuration = Configuration(structure, thresholds, op)
    fast = evaluate(table, [configuration])
    directory = write_experiment(pool, configuration, tmp_path / "calibrated")

    replayed = run_experiment(directory, tmp_path, "replayed", "cache.mode=readonly",
                              f"cache.path={tmp_path / 'gen.sqlite'}")
    assert replayed.metrics["backend_calls"] == 0
    assert [row["correct"] for row in replayed.problems] == fast.correct[0].tolist()
    assert [row["cost_usd"] for row in replayed.problems] == pytest.approx(fast.cost[0].tolist(),
                                                                           rel=1e-12)
    answered = [row["resolved_stage"] for row in replayed.problems]
    assert answered == [order[i] for i in fast.answering[0]]

    fresh = run_experiment(directory, tmp_path, "fresh", f"cache.path={tmp_path / 'new.sqlite'}",
                           backends={"scripted": backend})
    assert fresh.metrics["backend_calls"] > 0
    assert ((tmp_path / "fresh" / "problems.jsonl").read_bytes()
            == (tmp_path / "replayed" / "problems.jsonl").read_bytes())


def test_the_experiment_is_the_pool_config_with_the_configuration(pools, tmp_path):
    pool = Pool.load(pools / "cope")
    configuration = Configuration(Structure(8, ("s1", "s3")), (0.625, None), "ge")
    directory = write_experiment(pool, configuration, tmp_path)
    cfg = compose_config([f"hydra.searchpath=[file://{directory}]", "experiment=calibrated_cope"])
    assert (cfg.method.tau1, cfg.method.stages.s1.threshold) == (0.625, 0.625)
    assert list(cfg.method.order) == ["s1", "s3"] and cfg.method.threshold_op == "ge"
    assert cfg.method.early_exit is True
    assert (cfg.task.offset, cfg.task.limit) == (0, 5)
    assert cfg.pair.name == pool.config["pair"]["name"]
    assert cfg.backend.name == "scripted"


def test_a_survey_counts_what_it_lacks_and_generates_nothing(pools, tmp_path):
    pool = Pool.load(pools / "cope")
    table = survey(pool, Structure(4, ("s1", "s2", "s3")), tmp_path)
    # fewer votes change stage 1's majority on some problems: stage 2 then needs executions
    # with another g^S, by the small model; the large model's guideline does not change
    assert set(table.missing) == {"qwen-coder-0_5b"} and table.missing["qwen-coder-0_5b"] > 0
    full = survey(pool, Structure(8, ("s1", "s2", "s3")), tmp_path)
    assert full.covered and full.confidence.shape == (3, 40)


def cli(pools, tmp_path, *args):
    return calibrate.main([str(pools / "cope"), "--reference", str(pools / "large"),
                           "--out", str(tmp_path / "out"), "--scratch", str(tmp_path), *args])


def test_calibrate_refuses_test_problems_among_the_dev_ones(pools, tmp_path, capsys):
    code = cli(pools, tmp_path, "--target", "accuracy>=large-0.1", "--test", "task.offset=230",
               "task.limit=20")
    assert code == 2
    assert "share 10 ids" in capsys.readouterr().err


def test_an_unmet_target_shows_the_closest_configurations(pools, tmp_path, capsys):
    code = cli(pools, tmp_path, "--target", "accuracy>=0.99", "--test", "task.limit=100")
    assert code == 1
    out = capsys.readouterr().out
    assert "no configuration is certified" in out and out.count("votes=8 order=s1,s2,s3") == 5
    report = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert report["methods"][0]["chosen"] is None and len(report["methods"][0]["closest"]) == 5
    # 99% accuracy is above every configuration's on these pools: out of reach, it says
    assert report["methods"][0]["testing_problems_needed"] is None and "out of reach" in out


def test_a_target_the_testing_part_is_too_small_to_certify_says_what_it_needs(pools, tmp_path,
                                                                               capsys):
    # the stub pool answers as large alone does on most problems; certifying a paired
    # difference of at most 0.01 takes hundreds of problems, the testing part has a few dozen
    code = cli(pools, tmp_path, "--target", "accuracy>=large-0.01", "--test", "task.limit=100")
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "calibration.json").read_text())
    method = report["methods"][0]
    assert code == 1 and method["chosen"] is None, out
    assert method["testing_problems_needed"] > method["testing_part"]
    assert f"certifying needs at least {method['testing_problems_needed']}" in out


def test_a_met_target_writes_the_cheapest_certified_configuration(pools, tmp_path, capsys):
    code = cli(pools, tmp_path, "--target", "accuracy>=large-0.45", "--delta", "0.2",
               "--search", "thresholds,order,threshold_op", "--test", "task.limit=100")
    assert code == 0, capsys.readouterr()
    report = json.loads((tmp_path / "out" / "calibration.json").read_text())
    method = report["methods"][0]
    assert method["certified"] >= 1
    assert method["structures"] == ["votes=8 order=s1,s2,s3", "votes=8 order=s1,s2",
                                    "votes=8 order=s1", "votes=8 order=s3"]
    # the orders whose stages read plans the pool never handed them are left out, with what
    # they would need: s3 after s1 reads g^S, s2 without s1 has no g^S
    assert {x["structure"]: x["missing_generations"] for x in method["left_out"]} == {
        "votes=8 order=s1,s3": {"qwen-coder-1_5b": 40},
        "votes=8 order=s2,s3": {"qwen-coder-0_5b": 320},
        "votes=8 order=s2": {"qwen-coder-0_5b": 320}}
    # every configuration of the covered structures was evaluated, and the choice is the
    # cheapest certified one: the written experiment replays to the dev estimate
    assert method["configurations"] == 2 * (81 + 9 + 1 + 1)
    dev = method["chosen"]["dev"]
    replayed = run_experiment(tmp_path / "out", tmp_path, "chosen", "cache.mode=readonly",
                              f"cache.path={pools / 'gen.sqlite'}")
    chosen = replayed.metrics
    assert chosen["accuracy"] == dev["accuracy"]
    assert chosen["cost_usd_per_million"] == pytest.approx(dev["usd_per_1m"], rel=1e-9)


def test_targets_parse_and_bad_ones_say_what_is_understood():
    assert parse_target("accuracy>=large-0.02").value == 0.02
    assert parse_target("accuracy >= 0.6").relative is False
    assert parse_target("cost<=0.6*large").value == 0.6
    assert parse_target("cost<=150").relative is False
    with pytest.raises(ConfigError, match="accuracy>=large-EPS"):
        parse_target("acc>0.5")


def test_the_betting_pvalue_is_valid_at_the_boundary_and_has_power():
    rng = np.random.default_rng(0)
    alpha, delta, n = 0.3, 0.1, 100
    null = [betting_pvalue(rng.random(n) < alpha, alpha, delta) for _ in range(2000)]
    assert np.mean(np.array(null) <= delta) <= delta  # the level holds (it is conservative)
    far = [betting_pvalue(rng.random(n) < 0.1, alpha, delta) for _ in range(200)]
    assert np.mean(np.array(far) <= delta) > 0.9
    # paired losses, mostly one half: the bet adapts to their small variance
    paired = np.full(100, 0.5)
    paired[:4] = 1.0
    assert betting_pvalue(paired, 0.55, delta) <= delta
    bound = betting_upper_bound(paired, delta)
    assert 0.52 < bound < 0.55
    assert betting_pvalue(paired, bound + 1e-3, delta) <= delta < betting_pvalue(
        paired, bound - 1e-3, delta)


def test_the_fewest_problems_are_the_first_on_which_the_test_rejects():
    # a configuration answering exactly as large alone does: every paired loss one half
    for epsilon, delta in ((0.05, 0.1), (0.1, 0.1), (0.05, 0.05)):
        alpha = (1 + epsilon) / 2
        n = fewest_problems(0.5, alpha, delta)
        assert betting_pvalue([0.5] * n, alpha, delta) <= delta
        assert betting_pvalue([0.5] * (n - 1), alpha, delta) > delta
        # a cap on the search is honoured exactly, also when it is no power of two
        assert fewest_problems(0.5, alpha, delta, most=n) == n
        assert fewest_problems(0.5, alpha, delta, most=n - 1) is None
    # a looser target needs fewer problems, a stricter guarantee more
    assert fewest_problems(0.5, 0.55, 0.1) < fewest_problems(0.5, 0.525, 0.1) \
        < fewest_problems(0.5, 0.525, 0.05)
    assert fewest_problems(0.6, 0.55, 0.1) is None  # the level is under the loss


def test_a_structure_names_votes_only_where_a_stage_votes():
    from types import SimpleNamespace

    from cope.calibration.cli import structures

    def pool(voting):
        return SimpleNamespace(votes=8, order=("small", "large"), run_dir="pool",
                               voting_stages=lambda: voting)

    # FrugalGPT's stages answer once each: one structure per order, labelled without votes
    assert [s.label for s in structures(pool([]), {"votes", "order"}, None, None)] == [
        "order=small,large", "order=small", "order=large"]
    labels = [s.label for s in structures(pool(["small"]), {"votes"}, None, None)]
    assert labels == [f"votes={n} order=small,large" for n in range(1, 9)]


def test_clopper_pearson_matches_scipy():
    for k, n in ((0, 10), (3, 10), (50, 100), (100, 100)):
        expected = stats.binomtest(k, n).proportion_ci(0.9, method="exact")
        assert clopper_pearson(k, n, 0.1) == pytest.approx((expected.low, expected.high))


def test_pareto_front_and_fixed_sequence():
    risk = np.array([0.1, 0.2, 0.15, 0.3, 0.05])
    cost = np.array([5.0, 1.0, 6.0, 0.5, 9.0])
    assert pareto_front(risk, cost).tolist() == [4, 0, 1, 3]
    losses = np.array([[0.0] * 50, [1.0] * 50, [0.0] * 50])
    valid, pvalues = fixed_sequence([0, 1, 2], losses, 0.3, 0.1)
    assert valid == [0] and set(pvalues) == {0, 1}  # testing stops at the first null kept


def test_a_steady_configuration_is_tested_before_an_erratic_one_with_a_lower_mean():
    # paired losses against large alone, alpha = 0.55: "steady" answers as large alone does
    # (every loss one half), "erratic" is better on average but often loses to it
    alpha, delta, n = 0.55, 0.1, 50
    steady = np.full(n, 0.5)
    erratic = np.tile([0.0, 1.0] * 4 + [0.5, 0.0], n // 10)
    assert erratic.mean() < steady.mean()
    losses = np.array([erratic, steady])
    cost = np.array([1.0, 2.0])  # the erratic one is cheaper too: by mean it dominates
    assert pareto_front(losses.mean(axis=1), cost).tolist() == [0]
    order = certification_order(losses, cost, alpha, delta)
    assert order.tolist() == [1, 0]
    # tested on like losses, the steady one is certified; led by the erratic one, nothing is
    assert fixed_sequence(order, losses, alpha, delta)[0] == [1]
    assert fixed_sequence([0, 1], losses, alpha, delta)[0] == []


def test_p_values_of_many_configurations_are_each_row_s_own():
    rng = np.random.default_rng(1)
    losses = rng.random((6, 40)).round(1)
    together = betting_pvalues(losses, 0.6, 0.1)
    assert together.tolist() == [betting_pvalues(row[None, :], 0.6, 0.1)[0] for row in losses]


def test_the_split_is_fixed_by_the_ids():
    ids = [str(i) for i in range(200, 240)]
    a, b = split(ids)
    assert len(a) == len(b) == 20 and not set(a) & set(b)
    again = split(list(reversed(ids)))
    assert sorted(ids[i] for i in a) == sorted(list(reversed(ids))[i] for i in again[0])


def test_the_grid_is_every_value_a_consensus_takes(pools, tmp_path):
    table = survey(Pool.load(pools / "cope"), Structure(8, ("s1", "s2", "s3")), tmp_path)
    configs = configurations(table, ("gt",))
    assert len(configs) == 81
    assert {c.thresholds[0] for c in configs} == {k / 8 for k in range(9)}
    observed = set(np.round(table.confidence[:2].ravel() * 8, 9))
    assert observed <= set(range(9))


def test_the_calibrated_configuration_is_tested_once_against_large(pools, backend, tmp_path):
    from analysis.calibration import main as report

    assert cli(pools, tmp_path, "--target", "accuracy>=large-0.45", "--delta", "0.2",
               "--test", "task.limit=12") == 0
    out = tmp_path / "out"
    test_runs = tmp_path / "test"
    calibrated = run(compose_config([f"hydra.searchpath=[file://{out}]",
                                     "experiment=calibrated_cope", f"run_dir={test_runs / 'cope'}",
                                     f"cache.path={tmp_path / 'test.sqlite'}"]),
                     backends={"scripted": backend})
    large = run(compose_config(base(tmp_path, "method=large", "task.limit=12",
                                    f"run_dir={tmp_path / 'large'}")),
                backends={"scripted": backend})
    assert [row["id"] for row in calibrated.problems] == [str(i) for i in range(12)]
    assert report([str(out), "--runs", str(test_runs), "--large", str(tmp_path / "large")]) == 0
    row, = json.loads((out / "test.json").read_text())
    assert row["test"]["accuracy"] == calibrated.metrics["accuracy"]
    assert row["large"]["accuracy"] == large.metrics["accuracy"]
    assert row["dev"] == json.loads((out / "calibration.json").read_text())[
        "methods"][0]["chosen"]["dev"]
    table = (out / "calibration.md").read_text()
    assert f"{calibrated.metrics['accuracy']:.1%}" in table
    assert (out / "calibration-test.png").stat().st_size > 0


@pytest.mark.integration
def test_a_real_pool_on_llama_cpp_replays_calibrated_runs_exactly(tmp_path):
    """The tiny packaged model through llama.cpp: a pool, then two configurations of it run
    afresh and from the pool; the same records, byte for byte."""
    tiny = ["pair=tiny-cpu", "task=gsm8k", "task.offset=200", "task.limit=2", "method=cope",
            "method.votes=2", "method.max_tokens=32", "method.plan_max_tokens=16",
            "backend.n_ctx=1024", "progress=false", f"cache.path={tmp_path / 'pool.sqlite'}"]
    run(compose_config([*tiny, "experiment=pool", f"run_dir={tmp_path / 'pool'}"]))
    pool = Pool.load(tmp_path / "pool")
    table = survey(pool, Structure(2, ("s1", "s2", "s3")), tmp_path)
    assert table.covered
    for k, (thresholds, op) in enumerate((((0.5, 0.5, None), "ge"), ((0.5, 1.0, None), "gt"))):
        configuration = Configuration(table.structure, thresholds, op)
        fast = evaluate(table, [configuration])
        directory = tmp_path / f"c{k}"
        path = directory / "experiment" / "calibrated_cope.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(experiment(pool, configuration, {"offset": 200, "limit": 2}, "x"))
        runs = {}
        for name, cache in (("replayed", ["cache.mode=readonly"]),
                            ("fresh", [f"cache.path={tmp_path / f'fresh{k}.sqlite'}"])):
            runs[name] = run(compose_config([f"hydra.searchpath=[file://{directory}]",
                                             "experiment=calibrated_cope",
                                             f"run_dir={directory / name}", *cache]))
        assert runs["replayed"].metrics["backend_calls"] == 0
        assert runs["fresh"].metrics["backend_calls"] > 0
        assert [row["resolved_stage"] for row in runs["replayed"].problems] == [
            table.stages[i] for i in fast.answering[0]]
        assert ((directory / "fresh" / "problems.jsonl").read_bytes()
                == (directory / "replayed" / "problems.jsonl").read_bytes())
