from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from cope.config import register_configs
from cope.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
SHARED_DATA = Path(os.environ.get("COPE_SHARED_DATA", ROOT.parent / "shared" / "data"))

register_configs()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that needs the sandbox on a machine with none that is safe (no bubblewrap, no
    user namespaces) is reported as NOT CHECKED, with the reason, instead of failing."""
    outcome = yield
    report = outcome.get_result()
    error = call.excinfo.value if call.excinfo is not None else None
    if report.failed and isinstance(error, ConfigError) and "no safe sandbox" in str(error):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"NOT CHECKED: {error}")


def pytest_terminal_summary(terminalreporter):
    """Say loudly which protections this machine could not check (their tests skip with a
    reason that starts with NOT CHECKED)."""
    unchecked = [report for report in terminalreporter.stats.get("skipped", [])
                 if isinstance(report.longrepr, tuple) and "NOT CHECKED" in report.longrepr[2]]
    if unchecked:
        terminalreporter.section("protections NOT checked on this machine", sep="!",
                                 yellow=True, bold=True)
        for report in unchecked:
            terminalreporter.line(f"{report.nodeid}: {report.longrepr[2]}")


@pytest.fixture(scope="session", autouse=True)
def cope_home(tmp_path_factory):
    """One COPE_HOME for the session: packaged models are assembled once into it."""
    home = os.environ.get("COPE_TEST_HOME") or str(tmp_path_factory.mktemp("cope_home"))
    previous = os.environ.get("COPE_HOME")
    os.environ["COPE_HOME"] = home
    yield Path(home)
    if previous is None:
        os.environ.pop("COPE_HOME", None)
    else:
        os.environ["COPE_HOME"] = previous


@pytest.fixture(scope="module")
def stub():
    """The OpenAI-compatible stub server, one per module that asks for it."""
    from cope.testing.stub_server import StubServer

    with StubServer() as server:
        yield server


@pytest.fixture(scope="session")
def sglang_api():
    """SGLang's own contract module (sglang/api/v1/api_types.py of the pinned wheel), which the
    stub's /generate checks every body against; fetched once per machine."""
    from cope.testing.sglang_contract import SGLANG_VERSION, ContractUnavailable, load

    try:
        return load()
    except ContractUnavailable as exc:
        pytest.skip(f"NOT CHECKED: SGLang {SGLANG_VERSION}'s HTTP contract is not available "
                    f"here, so nothing was checked against it ({exc})")


def compose_config(overrides: list[str] | None = None):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))


def skip_if_missing_options(group: str, option: str) -> None:
    """Skip a config that selects a group option this tree does not have yet (an experiment
    written for a task that lands separately)."""
    import re

    text = (CONF_DIR / group / f"{option}.yaml").read_text()
    for other, choice in re.findall(r"override /(\w+): ([\w.+-]+)", text):
        if not (CONF_DIR / other / f"{choice}.yaml").is_file():
            pytest.skip(f"{group}={option} needs {other}={choice} (conf/{other}/{choice}.yaml)")


@pytest.fixture
def make_config(tmp_path):
    """Compose conf/ with overrides; records and cache go under the test's tmp dir."""

    def make(*overrides: str):
        base = [f"run_dir={tmp_path / 'run'}", f"cache.path={tmp_path / 'cache.sqlite'}",
                "progress=false"]
        return compose_config(base + list(overrides))

    return make


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "math500.jsonl").is_file():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA} (set COPE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def analysis_sweep(tmp_path_factory, cope_home):
    """Real run directories of a small sweep (scripted backend, CPU pair's names and prices):
    fixed cell directories as experiments/cpu_reproduction lays them out, one unfinished cell
    (killed mid-write), and two more seeds of large and COPE in a Hydra multirun layout."""
    from sweep import CELLS, cut_short, make_sweep

    root = tmp_path_factory.mktemp("analysis_sweep")
    make_sweep(root / "gsm8k-cpu", CELLS, limit=30)
    make_sweep(root / "gsm8k-cpu", {"cope_s1s3": ["method=cope_s1s3"]}, limit=30)
    cut_short(root / "gsm8k-cpu" / "cope_s1s3", keep=12)
    for job, seed in enumerate((1, 2)):
        for offset, method in enumerate(("large", "cope")):
            make_sweep(root / "multirun" / "2026-01-01" / "00-00-00",
                       {str(2 * job + offset): [f"method={method}", f"seed={seed}"]}, limit=30)
    return root
