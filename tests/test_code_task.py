"""Code tasks: extraction, stage confidence from visible tests, judging on hidden tests,
data loading, and COPE end to end on MBPP with a scripted backend."""

import asyncio
import json
import random
from types import SimpleNamespace

import pytest
from conftest import compose_config

from cope.backends.scripted import ScriptedBackend
from cope.confidence import passes
from cope.confidence.test_filter import filter_by_tests
from cope.errors import ConfigError, DataError
from cope.runner import run
from cope.tasks import create_task
from cope.tasks.base import Problem
from cope.tasks.code import EXECUTOR, GOAL_PLANNER, GUIDELINE_PLANNER, extract_code
from cope.tasks.code_data import MBPP

RIGHT = "def add(a, b):\n    return a + b"
ALSO_RIGHT = "def add(a, b):\n    return sum((a, b))"
WRONG = "def add(a, b):\n    return a * b"
ONLY_VISIBLE = "def add(a, b):\n    return 5 if (a, b) == (2, 3) else 0"


def fenced(code, tag="python"):
    return f"Here is the solution.\n```{tag}\n{code}\n```\nIt adds the numbers."


def problem(visible=("assert add(2, 3) == 5",), hidden=("assert add(2, 3) == 5",
                                                         "assert add(10, 1) == 11")):
    return Problem("p1", "Write add(a, b).", RIGHT, 0,
                   {"visible": list(visible), "hidden": list(hidden), "setup": ""})


def mbpp_task(**cfg):
    return MBPP(SimpleNamespace(**{"source": None, "split": "test", "hidden_tests": None,
                                   "timeout_s": 10.0, **cfg}))


@pytest.fixture
def mbpp_file(shared_data):
    path = shared_data / "mbpp.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


# extraction

def test_a_fenced_python_block_is_extracted():
    assert extract_code(fenced(RIGHT)) == RIGHT
    assert extract_code(fenced(RIGHT, tag="")) == RIGHT
    assert extract_code(fenced(RIGHT, tag="Python3")) == RIGHT


def test_the_block_defining_the_entry_point_wins_over_examples():
    text = ("Use it like this:\n```python\nprint(add(1, 2))\n```\nThe function:\n"
            f"```python\nimport math\n{RIGHT}\n```\n```python\nassert add(1, 1) == 2\n```")
    assert extract_code(text, entry_point="add") == f"import math\n{RIGHT}"
    assert extract_code(text) == f"import math\n{RIGHT}"  # the first block that defines one


def test_other_languages_are_skipped_and_an_unclosed_fence_reads_to_the_end():
    text = f"```bash\npip install x\n```\n```python\n{RIGHT}"
    assert extract_code(text) == RIGHT


def test_bare_code_without_a_fence_drops_trailing_prose():
    text = f"Sure! Here it is:\n\n{RIGHT}\n\nThis function returns the sum of a and b."
    assert extract_code(text) == RIGHT


def test_no_code_is_an_abstention():
    assert extract_code("I cannot solve this problem.") is None
    assert extract_code("") is None


# stage confidence and judging

def test_a_stage_answers_with_a_passing_candidate_chosen_by_the_rng():
    task = mbpp_task()
    texts = [fenced(WRONG), fenced(RIGHT), "no code here", fenced(ALSO_RIGHT)]
    chosen = set()
    for seed in range(12):
        vote = filter_by_tests(task, problem(), texts, random.Random(seed))
        assert vote.confidence == 1.0 and vote.support == [1, 3]
        assert vote.answers == [WRONG, RIGHT, None, ALSO_RIGHT]
        chosen.add(vote.answer)
    assert chosen == {RIGHT, ALSO_RIGHT}
    first = filter_by_tests(task, problem(), texts, random.Random(5)).answer
    assert filter_by_tests(task, problem(), texts, random.Random(5)).answer == first  # seeded


def test_a_stage_escalates_when_no_candidate_passes():
    task = mbpp_task()
    vote = filter_by_tests(task, problem(), [fenced(WRONG), "nothing", fenced(WRONG)], random.Random(0))
    assert vote.confidence == 0.0 and vote.support == []
    assert vote.answer == WRONG  # the last stage still answers with a candidate
    empty = filter_by_tests(task, problem(), ["nothing", "still nothing"], random.Random(0))
    assert empty.answer is None and empty.confidence == 0.0


def test_the_escalation_passes_no_threshold():
    vote = filter_by_tests(mbpp_task(), problem(), [fenced(WRONG)], random.Random(0))
    assert not any(passes(vote.confidence, tau, op) for tau in (0.01, 0.5, 0.75, 1.0)
                   for op in ("gt", "ge"))


def test_visible_tests_filter_and_hidden_tests_judge():
    task = mbpp_task()
    vote = filter_by_tests(task, problem(), [fenced(ONLY_VISIBLE)], random.Random(0))
    assert vote.confidence == 1.0  # it passes the visible test ...
    assert not task.is_correct(problem(), vote.answer)  # ... but not the hidden ones
    assert task.is_correct(problem(), RIGHT)
    assert not task.is_correct(problem(), None)


def test_judging_runs_off_the_event_loop():
    task = mbpp_task()
    slow = "import time\ntime.sleep(1.0)\n" + RIGHT

    async def judge_while_ticking():
        ticks = 0
        judging = asyncio.ensure_future(task.is_correct_async(problem(), slow))
        while not judging.done():
            ticks += 1
            await asyncio.sleep(0.05)
        return judging.result(), ticks

    correct, ticks = asyncio.run(judge_while_ticking())
    assert correct
    assert ticks >= 10  # the loop kept turning through the second-long program


def test_prompts_ask_for_plans_without_code_and_a_python_block():
    task = mbpp_task()
    p = problem()
    assert task.plan_messages(p, "goal")[0] == ("system", GOAL_PLANNER)
    assert task.plan_messages(p, "guideline")[0] == ("system", GUIDELINE_PLANNER)
    from cope.tasks.base import Plan

    messages = task.execute_messages(p, [Plan("goal", "Add two numbers.", "small")])
    assert messages[0] == ("system", EXECUTOR) and "```python" in EXECUTOR
    assert "Goal: Add two numbers." in messages[1][1] and "Write add(a, b)." in messages[1][1]


# data

def test_mbpp_test_split_from_the_shared_file(mbpp_file):
    problems = mbpp_task(source=str(mbpp_file.parent)).load()
    assert len(problems) == 500
    assert [p.id for p in problems[:2]] == ["11", "12"] and problems[-1].id == "510"
    first = problems[0]
    assert first.meta["visible"] == first.meta["hidden"] and len(first.meta["visible"]) == 3
    assert first.meta["visible"][0] in first.question
    assert "Your code should pass these tests:" in first.question


def test_mbpp_et_hidden_tests_replace_the_judge_and_are_recorded(mbpp_file, tmp_path):
    rows = [json.loads(line) for line in mbpp_file.read_text().splitlines()]
    extended = tmp_path / "MBPP_ET.jsonl"
    extended.write_text("".join(
        json.dumps({"task_id": r["task_id"], "test_list": r["test_list"] + ["assert True"]}) + "\n"
        for r in rows if 11 <= r["task_id"] <= 510))
    task = mbpp_task(source=str(mbpp_file), hidden_tests=str(extended))
    problems = task.load()
    assert len(problems[0].meta["hidden"]) == 4 and len(problems[0].meta["visible"]) == 3
    assert task.details()["hidden_tests"] == f"MBPP-ET ({extended})"
    assert "no MBPP-ET" in mbpp_task().details()["hidden_tests"]


def test_an_mbpp_et_file_missing_tasks_is_refused(mbpp_file, tmp_path):
    extended = tmp_path / "MBPP_ET.jsonl"
    extended.write_text(json.dumps({"task_id": 11, "test_list": ["assert True"]}) + "\n")
    with pytest.raises(DataError, match="has no tests for MBPP task ids"):
        mbpp_task(source=str(mbpp_file), hidden_tests=str(extended)).load()
    with pytest.raises(DataError, match="no such file"):
        mbpp_task(source=str(mbpp_file), hidden_tests=str(tmp_path / "nowhere.jsonl")).load()


def test_an_empty_hidden_test_list_is_a_data_error_naming_file_and_line(tmp_path):
    from cope.tasks.code_data import read_hidden_tests

    extended = tmp_path / "MBPP_ET.jsonl"
    extended.write_text(json.dumps({"task_id": 11, "test_list": ["assert True"]}) + "\n"
                        + json.dumps({"task_id": 12, "test_list": []}) + "\n")
    with pytest.raises(DataError, match=f"{extended}:2: task 12 has an empty test_list"):
        read_hidden_tests(str(extended))


def test_malformed_mbpp_files_name_file_and_line(tmp_path):
    bad = tmp_path / "mbpp.jsonl"
    bad.write_text('{"task_id": 11, "text": "t", "code": "c", "test_list": ["assert 1"]}\n{oops\n')
    with pytest.raises(DataError, match=f"{bad}:2"):
        mbpp_task(source=str(bad)).load()
    bad.write_text('{"task_id": 11, "text": "t", "code": "c", "test_list": ["assert 1"]}\n'
                   '{"task_id": 12, "text": "t", "code": "c", "test_list": []}\n')
    with pytest.raises(DataError, match=f"{bad}:2: task 12 has an empty test_list"):
        mbpp_task(source=str(bad)).load()
    bad.write_text('{"task_id": 11, "text": "t", "code": "c"}\n')
    with pytest.raises(DataError, match="'test_list'"):
        mbpp_task(source=str(tmp_path)).load()
    bad.write_text('{"task_id": 700, "text": "t", "code": "c", "test_list": ["assert 1"]}\n')
    with pytest.raises(DataError, match="no MBPP task ids in 11-510"):
        mbpp_task(source=str(bad)).load()
    with pytest.raises(DataError, match="MBPP's splits"):
        mbpp_task(source=str(bad), split="dev").load()


def test_humaneval_is_packaged():
    task = create_task(compose_config(["task=humaneval"]).task)
    problems = task.load()
    assert len(problems) == 164 and problems[0].id == "HumanEval/0"
    first = problems[0]
    assert first.meta["visible"] == first.meta["hidden"]
    assert first.meta["hidden"][0].rstrip().endswith(f"check({first.meta['entry_point']})")
    assert "visible_tests" in task.details()


def test_config_checks_for_code_tasks(make_config):
    from cope.config import validate

    with pytest.raises(ConfigError, match="task.hidden_tests is MBPP's"):
        validate(make_config("task=humaneval", "task.hidden_tests=/x.jsonl"))
    with pytest.raises(ConfigError, match="task.timeout_s"):
        validate(make_config("task=mbpp", "task.timeout_s=0"))


# end to end

def scripted_coder(request):
    """Small executions pass only the visible tests of task 11 unless a guideline is shown;
    the large model writes the reference solution of task 12."""
    system, user = request.messages[0][1], request.messages[-1][1]
    if system == GOAL_PLANNER:
        return "Remove a character from both ends."
    if system == GUIDELINE_PLANNER:
        return "Find the first and last index of the character and slice around them."
    assert system == EXECUTOR
    large = "1.5b" in request.model_identity
    if "remove_Occ" in user:  # task 11: remove first and last occurrence of a character
        if "Guideline:" in user or large:
            return fenced("def remove_Occ(s, ch):\n    i = s.find(ch)\n    s = s[:i] + s[i + 1:]"
                          "\n    j = s.rfind(ch)\n    return s[:j] + s[j + 1:]")
        return "I do not know."
    if large:  # task 12: sort a matrix by row sums
        return fenced("def sort_matrix(M):\n    return sorted(M, key=sum)")
    return fenced("def sort_matrix(M):\n    return M")


def test_cope_on_mbpp_end_to_end(make_config, mbpp_file):
    cfg = make_config("task=mbpp", f"task.source={mbpp_file}", "task.limit=2",
                      "backend.name=scripted", "pair=qwen-coder-cpu", "method.votes=4")
    result = run(cfg, backends={"scripted": ScriptedBackend(scripted_coder)})
    rows = {row["id"]: row for row in result.problems}
    assert rows["11"]["resolved_stage"] == "s2" and rows["11"]["correct"]
    assert rows["12"]["resolved_stage"] == "s3" and rows["12"]["correct"]
    assert rows["11"]["stages"][0]["consensus"] == 0.0
    assert rows["11"]["stages"][1]["consensus"] == 1.0
    assert len(rows["11"]["stages"][1]["support"]) == 4
    m = result.metrics
    assert m["accuracy"] == 1.0 and m["resolved_by_stage"] == {"s1": 0, "s2": 1, "s3": 1}
    assert m["task_details"]["hidden_tests"].startswith("MBPP test_list")
    layers = mbpp_task().sandbox.isolation.layers
    assert m["task_details"]["sandbox"] == layers
    # every candidate that was run says which isolation protected it; an abstention, none
    small = rows["11"]["stages"][0]
    assert small["sandbox"] == [None] * 4 and rows["11"]["stages"][1]["sandbox"] == [layers] * 4
    ran = sum(len([x for x in s["sandbox"] if x]) for row in rows.values() for s in row["stages"])
    assert m["sandbox_isolation"] == {layers: ran}


def test_a_sandbox_this_machine_lacks_stops_the_run_before_any_generation(make_config,
                                                                           monkeypatch, tmp_path):
    from cope.config import validate
    from cope.sandbox import isolation

    with pytest.raises(ConfigError, match="sandbox.isolation='docker': choose one of"):
        validate(make_config("task=humaneval", "sandbox.isolation=docker"))
    real_which = isolation.shutil.which
    monkeypatch.setattr(isolation.shutil, "which",
                        lambda name: None if name == "bwrap" else real_which(name))
    isolation.detect.cache_clear()
    isolation.probe.cache_clear()
    requests = []
    cfg = make_config("task=humaneval", "task.limit=1", "backend.name=scripted",
                      "pair=qwen-coder-cpu", "sandbox.isolation=bwrap")
    try:
        with pytest.raises(ConfigError, match="apt-get install -y bubblewrap"):
            run(cfg, backends={"scripted": ScriptedBackend(lambda r: requests.append(r) or "x")})
    finally:
        isolation.detect.cache_clear()
        isolation.probe.cache_clear()
    assert requests == [] and not (tmp_path / "run").exists()
