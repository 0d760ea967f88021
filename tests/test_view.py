"""`cope view`: the pages' data against the records, tolerant reading, and the pages in real
headless Chromium (Debian's `chromium`, driven by Playwright), live and exported.

Screenshots are kept in test-artifacts/view/ (COPE_TEST_ARTIFACTS overrides it). Without
Playwright or Chromium the browser tests skip and say what they did not check; with
COPE_REQUIRE_BROWSER=1 (as .ci/run sets it) they fail instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from cope.records import read_complete_lines
from cope.results.pareto import Point, pareto_frontier
from cope.results.runs import load_run, run_summary
from cope.view.cli import main as view_main
from cope.view.payloads import RunsDir, file_key
from cope.view.records import SampleIndex, read_jsonl
from cope.view.site import Pages, serve

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("COPE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "view"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- the data of the pages -------------------------------------------------------------------

def test_runs_listing_matches_the_records(analysis_sweep):
    listing = RunsDir(analysis_sweep).runs_payload()
    by_key = {run["key"]: run for run in listing["runs"]}
    assert len(by_key) == 13 and listing["notes"] == []
    for key, shown in by_key.items():
        expected = run_summary(load_run(analysis_sweep / key))
        assert (shown["n"], shown["n_correct"]) == (expected["n"], expected["n_correct"]), key
        assert shown["cost_usd_per_million"] == pytest.approx(expected["cost_usd_per_million"])
        assert shown["resolved_by_stage"] == expected["resolved_by_stage"]
        low, high = shown["accuracy_ci"]
        assert low <= shown["accuracy"] <= high
    killed = by_key["gsm8k-cpu/cope_s1s3"]
    assert not killed["finished"] and killed["n"] == 12 and killed["n_selected"] == 30
    assert any("last line is incomplete" in note for note in killed["notes"])
    (group,) = listing["groups"]
    assert (group["task"], group["pair"]) == ("gsm8k", "qwen-coder-cpu")
    # the frontier is the shared one, over the runs on the full problem set
    full = [p for p in group["points"] if p["n"] == 30]
    front = {f.label for f in pareto_frontier([Point(p["key"], p["cost"], p["accuracy"]) for p in full])}
    assert {p["key"] for p in group["points"] if p["frontier"]} == front
    assert all(p["style"]["colour"].startswith("#") for p in group["points"])


def test_a_problem_shows_every_stage_plan_and_execution_of_its_records(analysis_sweep):
    runs = RunsDir(analysis_sweep)
    record = read_complete_lines(analysis_sweep / "gsm8k-cpu" / "cope" / "problems.jsonl")[3]
    samples = [s for s in read_complete_lines(analysis_sweep / "gsm8k-cpu" / "cope" / "samples.jsonl")
               if s["problem_id"] == record["id"]]
    shown = runs.problem_payload("gsm8k-cpu/cope", record["id"])
    assert shown["question"] and shown["gold"] == record["gold"]
    assert [s["name"] for s in shown["stages"]] == [s["stage"] for s in record["stages"]]
    for stage, kept in zip(shown["stages"], record["stages"]):
        assert (stage["answer"], stage["consensus"], stage["accepted"]) == (
            kept["answer"], kept["consensus"], kept["accepted"])
        executed = [s for s in samples if s["stage"] == kept["stage"] and s["role"] == "executor"]
        assert [e["text"] for e in stage["executions"]] == [s["text"] for s in executed]
        assert [e["answer"] for e in stage["executions"]] == kept["answers"]
        for execution, refs in zip(stage["executions"], kept["plans"]):
            for key, ref in zip(execution["plans"], refs):
                planner = next(s for s in samples if s["role"] == "planner"
                               and (s["stage"], s["sample_index"]) == (ref["stage"], ref["slot"]))
                assert stage["plans"][key]["text"] == planner["text"]
                assert stage["plans"][key]["truncated"] == (planner["finish_reason"] == "length")
    assert {c["key"] for c in shown["compare"]} >= {"gsm8k-cpu/large", "gsm8k-cpu/small_single"}


def test_what_a_running_killed_or_older_run_leaves_behind_shows_with_a_note(analysis_sweep, tmp_path, capsys):
    from sweep import copy_run

    root = tmp_path / "runs"
    good = copy_run(analysis_sweep / "gsm8k-cpu" / "large", root / "large")
    garbled = copy_run(analysis_sweep / "gsm8k-cpu" / "cope", root / "garbled")
    lines = (garbled / "problems.jsonl").read_text().splitlines(keepends=True)
    (garbled / "problems.jsonl").write_text("".join(lines[:5]) + "{not json\n" + "".join(lines[5:])
                                            + '{"index": 99, "id": "x", "ans')
    older = copy_run(analysis_sweep / "gsm8k-cpu" / "small_single", root / "older")
    rows = [json.loads(line) for line in (older / "problems.jsonl").read_text().splitlines()]
    (older / "problems.jsonl").write_text("".join(
        json.dumps({k: v for k, v in row.items() if k not in ("stages", "cost_usd")}) + "\n" for row in rows))
    (older / "config.yaml").write_text("method: {name: small_single}\n")  # an old config layout
    (root / "not-yaml").mkdir()
    (root / "not-yaml" / "problems.jsonl").write_text("")
    (root / "not-yaml" / "config.yaml").write_text("task: [unclosed\n")

    runs = RunsDir(root)
    listing = runs.runs_payload()
    by_key = {run["key"]: run for run in listing["runs"]}
    assert set(by_key) == {"large", "garbled", "older", "not-yaml"}
    assert by_key["large"]["notes"] == [] and by_key["large"]["n"] == len(read_jsonl(good / "problems.jsonl").rows)
    assert by_key["garbled"]["n"] == 30
    assert any("line 6: not JSON" in n for n in by_key["garbled"]["notes"])
    assert any("last line is incomplete" in n for n in by_key["garbled"]["notes"])
    assert by_key["older"]["n"] == 30 and by_key["older"]["label"] == "small_single (config not understood)"
    assert any("lack cost_usd, stages" in n for n in by_key["older"]["notes"])
    assert any("config.yaml does not parse" in n for n in by_key["not-yaml"]["notes"])
    # each older run's problem still opens
    assert runs.problem_payload("older", rows[0]["id"])["stages"] == []
    # and the terminal hears of every note once
    err = capsys.readouterr().err
    assert "garbled: problems.jsonl line 6: not JSON" in err and err.count("line 6: not JSON") == 1

    empty = tmp_path / "nothing"
    empty.mkdir()
    assert "no runs below" in RunsDir(empty).runs_payload()["notes"][0]


def test_samples_are_indexed_as_the_file_grows(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"problem_id": "a", "text": "1"}\n{"problem_id": "b", "text": "2"}\n{"problem_')
    index = SampleIndex(path)
    assert [s["text"] for s in index.samples("a")] == ["1"]
    assert index.samples("c") == []  # the torn line waits until it is whole
    with path.open("a") as handle:
        handle.write('id": "c", "text": "3"}\n{"text": "4", "problem_id": "a"}\n')
    assert [s["text"] for s in index.samples("c")] == ["3"]
    assert [s["text"] for s in index.samples("a")] == ["1", "4"]  # a line not written id-first


def test_export_writes_a_site_and_never_a_run_directory(analysis_sweep, tmp_path, capsys):
    before = tree_digest(analysis_sweep)
    out = tmp_path / "site"
    assert view_main([str(analysis_sweep), "--export", str(out)]) == 0
    assert "13 runs" in capsys.readouterr().out
    assert (out / "index.html").read_text().count('data-mode="export"') == 1
    runs_js = (out / "data" / "runs.js").read_text()
    assert runs_js.startswith('copeData("data/runs.js", ')
    problems = len(list((out / "data" / "problem").rglob("*.js")))
    assert problems == sum(len(read_complete_lines(p / "problems.jsonl"))
                           for p in {q.parent for q in analysis_sweep.rglob("problems.jsonl")})
    # nothing in the site names a server (SVG's namespace is a name, never fetched)
    for page in (out / "index.html", out / "app.js", out / "style.css"):
        text = page.read_text().replace('"http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert view_main([str(analysis_sweep), "--export", str(analysis_sweep / "gsm8k-cpu" / "cope" / "site")]) == 2
    assert "must not write into a run directory" in capsys.readouterr().err
    assert tree_digest(analysis_sweep) == before


def test_cope_view_is_a_command_of_cope(tmp_path, capsys, monkeypatch):
    from cope import cli

    monkeypatch.setattr("sys.argv", ["cope", "view", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2 and "is not a directory" in capsys.readouterr().err


# -- the pages in a real browser -------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "Playwright is not installed (pip install playwright)"
    if why is None and CHROMIUM is None:
        why = "no chromium on PATH (apt-get install chromium)"
    if why is not None:
        message = f"NOT CHECKED: the viewer's pages in a browser: {why}"
        if os.environ.get("COPE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()


def live(root: Path) -> tuple[str, object]:
    server = serve(Pages(RunsDir(root)), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_runs_to_problem_to_stage_in_the_browser(analysis_sweep, page):
    url, server = live(analysis_sweep)
    try:
        page.goto(url)
        page.wait_for_selector("[data-test=runs] tbody tr")
        rows = page.locator("[data-test=runs] tbody tr")
        assert rows.count() == 13
        cope = load_run(analysis_sweep / "gsm8k-cpu" / "cope")
        expected = run_summary(cope)
        row = page.locator("tr[data-run='gsm8k-cpu/cope']")
        assert row.locator("[data-test=accuracy]").inner_text().startswith(f"{100 * expected['accuracy']:.1f}%")
        # the plot: one mark per run with an accuracy, the frontier marked
        plot = page.locator("[data-test=pareto]")
        assert plot.locator("a[data-label]").count() == 13
        assert plot.locator("a[data-frontier=yes]").count() >= 1
        page.fill("#runs-filter", "s1s")
        assert page.inner_text("[data-test=runs-count]") == "2 of 13 runs"
        page.fill("#runs-filter", "")
        shot(page, "runs")

        row.locator("a").first.click()
        page.wait_for_selector("[data-test=problems] tbody tr")
        assert page.inner_text("[data-test=problems-count]") == "30 of 30 problems"
        page.select_option("#p-correct", "wrong")
        wrong = [p for p in cope["problems"] if not p["correct"]]
        assert page.inner_text("[data-test=problems-count]") == f"{len(wrong)} of 30 problems"
        page.select_option("#p-stage", "s3")
        both = [p for p in wrong if p["resolved_stage"] == "s3"]
        assert page.inner_text("[data-test=problems-count]") == f"{len(both)} of 30 problems"
        shot(page, "run")

        problem = both[0]
        page.click(f"tr[data-problem='{problem['id']}'] a")
        page.wait_for_selector("[data-test=stage]")
        assert page.locator("[data-test=question]").inner_text().strip()
        stages = page.locator("section[data-run='gsm8k-cpu/cope'] [data-test=stage]")
        assert stages.count() == len(problem["stages"])
        for i, kept in enumerate(problem["stages"]):
            card = stages.nth(i)
            assert card.get_attribute("data-stage") == kept["stage"]
            assert card.locator("[data-test=stage-answer]").inner_text() == f"answer {kept['answer'] or 'none'}"
            decision = card.locator("[data-test=stage-decision]").inner_text()
            if kept["stage"] in ("s1", "s2"):
                assert f"consensus {kept['consensus']:.3f}" in decision
                assert decision.endswith("accepted" if kept["accepted"] else "escalated")
            assert card.locator("[data-test=execution]").count() == len(kept["answers"])
        # open one execution: its text is the sample's
        first = stages.nth(0).locator("[data-test=execution]").first
        first.locator("summary").click()
        sample = next(s for s in read_complete_lines(analysis_sweep / "gsm8k-cpu" / "cope" / "samples.jsonl")
                      if s["problem_id"] == problem["id"] and s["stage"] == "s1" and s["role"] == "executor")
        assert first.locator("pre").inner_text() == sample["text"]

        page.select_option("#compare", value=file_key("gsm8k-cpu/large"))
        page.wait_for_selector("section[data-run='gsm8k-cpu/large']")
        large = next(p for p in load_run(analysis_sweep / "gsm8k-cpu" / "large")["problems"]
                     if p["id"] == problem["id"])
        answer = page.locator("section[data-run='gsm8k-cpu/cope'] [data-test=final-answer]")
        differs = "diff" in (answer.get_attribute("class") or "")
        assert differs == (large["answer"] != problem["answer"])
        shot(page, "problem")
        assert page.errors == []
    finally:
        server.shutdown()


def test_a_running_sweep_can_be_watched(analysis_sweep, tmp_path, page):
    from sweep import copy_run

    run_dir = copy_run(analysis_sweep / "gsm8k-cpu" / "cope", tmp_path / "watch" / "cope")
    lines = (run_dir / "problems.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "metrics.json").unlink()
    (run_dir / "problems.jsonl").write_text("".join(lines[:4]))
    url, server = live(tmp_path / "watch")
    try:
        page.goto(f"{url}#/run/{file_key('cope')}")
        page.wait_for_selector("[data-test=problems] tbody tr")
        assert page.inner_text("[data-test=problems-count]") == "4 of 4 problems"
        with (run_dir / "problems.jsonl").open("a") as handle:
            handle.write("".join(lines[4:9]))
        page.wait_for_function(
            "document.querySelector('[data-test=problems-count]').textContent === '9 of 9 problems'",
            timeout=15000)
        assert page.errors == []
    finally:
        server.shutdown()


def test_the_exported_site_opens_from_the_file_system(analysis_sweep, tmp_path, page):
    out = tmp_path / "site"
    Pages(RunsDir(analysis_sweep)).export(out)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto((out / "index.html").as_uri())
    page.wait_for_selector("[data-test=runs] tbody tr")
    page.click("tr[data-run='gsm8k-cpu/cope_s2s3'] a")
    page.wait_for_selector("[data-test=problems] tbody tr")
    page.locator("[data-test=problems] tbody tr a").first.click()
    page.wait_for_selector("[data-test=stage]")
    assert page.locator("[data-test=stage]").count() >= 1
    assert requests and all(url.startswith("file://") for url in requests)
    shot(page, "exported-problem")
    assert page.errors == []


def test_errors_show_on_the_page(analysis_sweep, tmp_path, page):
    empty = tmp_path / "empty"
    empty.mkdir()
    url, server = live(empty)
    try:
        page.goto(url)
        page.wait_for_selector("[data-test=notes]")
        assert "no runs below" in page.inner_text("[data-test=notes]")
        page.goto(f"{url}#/run/nothing-here")
        page.wait_for_selector("[data-test=error]")
        assert "no run with file name" in page.inner_text("[data-test=error]")
    finally:
        server.shutdown()


def test_the_committed_reproduction_site_is_current(tmp_path, monkeypatch):
    """experiments/results/gsm8k-cpu/view is what --export writes today from the records
    beside it: re-export it (`cope view experiments/results/gsm8k-cpu --export
    experiments/results/gsm8k-cpu/view`) when the viewer or the records change."""
    committed = ROOT / "experiments" / "results" / "gsm8k-cpu" / "view"
    fresh = tmp_path / "view"
    monkeypatch.chdir(ROOT)  # paths in the site are written as given: relative to the repository
    Pages(RunsDir(Path("experiments/results/gsm8k-cpu"))).export(fresh)
    assert tree_digest(fresh) == tree_digest(committed)
