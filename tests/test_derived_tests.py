"""Extended MBPP tests derived from reference solutions: mutation keeps the given inputs'
shape, the derived tests hold for the reference and catch a program that only fits the
given asserts, and the file they make judges an MBPP run."""

import json
import os
import random
import subprocess
import sys

import pytest

from cope.sandbox import run_tests
from cope.tasks.code_data import MBPP
from cope.tasks.derived_tests import (GivenCall, Shape, _spread, derive_tests, main,
                                      mutate_args, mutate_value, parse_given)
from test_code_task import mbpp_task

# MBPP task 11, as in mbpp.jsonl
REMOVE_OCC = {
    "task_id": 11, "text": "Write a python function to remove first and last occurrence of a "
    "given character from the string.",
    "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): "
            "\r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    for i in "
            "range(len(s) - 1,-1,-1):  \r\n        if (s[i] == ch): \r\n            s = s[0 : i] "
            "+ s[i + 1:] \r\n            break\r\n    return s ",
    "test_list": ['assert remove_Occ("hello","l") == "heo"',
                  'assert remove_Occ("abcda","a") == "bcd"',
                  'assert remove_Occ("PHP","P") == "H"'],
    "test_setup_code": "", "challenge_test_list": []}
# passes the three given asserts: it removes every occurrence, not the first and the last
REMOVES_ALL = "def remove_Occ(s, ch):\n    return s.replace(ch, '')"
# right, and written differently from the reference
FIND_RFIND = ("def remove_Occ(s, ch):\n    i = s.find(ch)\n    if i < 0:\n        return s\n"
              "    s = s[:i] + s[i + 1:]\n    j = s.rfind(ch)\n"
              "    return s if j < 0 else s[:j] + s[j + 1:]")


def record(task_id, code, tests):
    return {"task_id": task_id, "text": f"Task {task_id}.", "code": code, "test_list": tests,
            "test_setup_code": ""}


def test_given_asserts_are_parsed_into_the_function_and_its_arguments():
    assert parse_given("assert f([1, 2], 'a', -3) == (1, 2)") == GivenCall("f", ([1, 2], "a", -3))
    assert parse_given("assert f(x) == 1") is None          # not a literal argument
    assert parse_given("assert set(f(1)) == {1}") is None   # the call is not the left side
    assert parse_given("assert math.isclose(f(1), 2.0)") is None
    assert parse_given("assert f(1) != 2") is None
    assert parse_given("x = 1") is None and parse_given("assert (") is None


def test_mutation_keeps_what_all_given_inputs_share():
    calls = [GivenCall("f", ([1, 3, 5], 3, 2, 4, [[1, 2], [3, 4]])),
             GivenCall("f", ([0, 2, 9, 9], 4, 1, 6, [[5, 6]])),
             GivenCall("f", ([2, 7], 2, 0, 3, [[7, 8], [9, 0]]))]
    shape = Shape.of(calls)
    assert shape.sorted_args == {0}
    assert shape.length_of == {1: 0}
    assert (2, 3) in shape.at_most and shape.floors[3] == 3
    assert shape.item_bounds[0] == (0, 9)
    rng = random.Random(0)
    changed = 0
    for _ in range(300):
        seq, length, k, n, pairs = mutate_args(calls[_ % 3].args, shape, rng)
        assert seq == sorted(seq) and all(0 <= x <= 9 for x in seq)
        assert length == len(seq)
        assert k <= n and n >= 3
        assert all(len(pair) == 2 for pair in pairs)  # records inside keep their length
        changed += (seq, length, k, n, pairs) != calls[_ % 3].args
    assert changed > 250


def test_single_characters_bools_and_none_stay_while_other_values_move():
    rng = random.Random(1)
    assert {mutate_value("l", rng) for _ in range(20)} == {"l"}
    assert {mutate_value(True, rng) for _ in range(20)} == {True}
    assert mutate_value(None, rng) is None
    words = {mutate_value("hello", rng) for _ in range(50)}
    assert len(words) > 10 and all(isinstance(word, str) for word in words)
    assert all(isinstance(mutate_value((1, 2), rng), tuple) for _ in range(20))


def test_derived_tests_hold_for_the_reference_and_catch_a_program_fitting_the_given_ones():
    derived = derive_tests(REMOVE_OCC)
    assert len(derived) == 20
    assert all(test.startswith("assert remove_Occ(") for test in derived)
    assert run_tests(REMOVE_OCC["code"], derived).passed
    assert run_tests(FIND_RFIND, REMOVE_OCC["test_list"] + derived).passed
    assert run_tests(REMOVES_ALL, REMOVE_OCC["test_list"]).passed
    assert not run_tests(REMOVES_ALL, derived).passed
    assert derive_tests(REMOVE_OCC) == derived  # the same seed derives the same tests


def test_inputs_the_reference_refuses_and_answers_that_vary_between_processes_are_dropped():
    picky = record(901, "def double(n):\n    assert n in (1, 2, 3)\n    return 2 * n",
                   ["assert double(1) == 2", "assert double(2) == 4", "assert double(3) == 6"])
    assert derive_tests(picky) == []
    # the order of a set of strings follows the process's hash seed
    unordered = record(902, "def unique(words):\n    return list(set(words))",
                       ["assert unique(['ab', 'cd', 'ef', 'gh', 'ij']) == "
                        "list(set(['ab', 'cd', 'ef', 'gh', 'ij']))"])
    derived = derive_tests(unordered, attempts=60)
    assert all(test.count("'") <= 6 for test in derived)  # one word at most: no order to vary
    for _ in range(3):  # what is kept (if anything) holds in every process
        assert all(run_tests(unordered["code"], [test]).passed for test in derived)


def test_sets_are_written_in_one_order_whatever_the_hash_seed(tmp_path):
    to_set = record(100, "def to_set(t):\n    return set(t)",
                    ["assert to_set(('ab', 'cd', 'ab')) == {'ab', 'cd'}",
                     "assert to_set(('x', 'yz', 'w')) == {'x', 'yz', 'w'}"])
    source = tmp_path / "mbpp.jsonl"
    source.write_text(json.dumps(to_set) + "\n")
    outputs = []
    for hash_seed in ("1", "2", "3"):
        out = tmp_path / f"derived-{hash_seed}.jsonl"
        subprocess.run([sys.executable, "-m", "cope.tasks.derived_tests", "--source", str(source),
                        "--out", str(out)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed})
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] == outputs[2]
    tests = json.loads(outputs[0])["test_list"][2:]
    assert len(tests) >= 10 and run_tests(to_set["code"], tests).passed


def test_equal_sets_count_as_one_answer_whatever_order_they_print_in():
    # 0 and 8 share a slot in a small set: each prints first when inserted first
    first, second = set([0, 8]), set([8, 0])
    assert repr(first) != repr(second) and first == second
    chosen = _spread([("f(1)", first), ("f(2)", second), ("f(3)", {1})], count=2)
    assert chosen == ["assert f(1) == {0, 8}", "assert f(3) == {1}"]


def test_float_answers_are_compared_with_a_tolerance():
    halve = record(903, "def half(x):\n    return x / 2",
                   ["assert half(3) == 1.5", "assert half(5) == 2.5"])
    derived = derive_tests(halve)
    assert derived and all("isclose(half(" in test for test in derived)
    assert run_tests("def half(x):\n    return x * 0.5 + 1e-12", derived).passed


def test_the_derived_file_judges_an_mbpp_run(tmp_path):
    source = tmp_path / "mbpp.jsonl"
    other = record(12, "def add(a, b):\n    return a + b",
                   ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 5) == 5"])
    train = record(700, other["code"], other["test_list"])
    source.write_text("".join(json.dumps(r) + "\n" for r in (REMOVE_OCC, other, train)))
    out = tmp_path / "derived.jsonl"
    assert main(["--source", str(source), "--out", str(out), "--count", "12"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["task_id"] for row in rows] == [11, 12]  # the test split only
    assert all(row["test_list"][:3] == r["test_list"] and row["given"] == 3 and
               row["derived"] == 12 and len(row["test_list"]) == 15
               for row, r in zip(rows, (REMOVE_OCC, other)))
    task = mbpp_task(source=str(source), hidden_tests=str(out))
    problems = task.load()
    assert problems[0].meta["visible"] == REMOVE_OCC["test_list"]
    assert problems[0].meta["hidden"] == rows[0]["test_list"]
    assert not task.is_correct(problems[0], REMOVES_ALL)
    assert task.is_correct(problems[0], FIND_RFIND)
    assert "derived from the reference solutions" in task.details()["hidden_tests"]
    assert isinstance(task, MBPP)

    assert main(["--source", str(source), "--out", str(out), "--split", "test", "train"]) == 0
    assert [json.loads(line)["task_id"] for line in out.read_text().splitlines()] == [11, 12, 700]


def test_a_missing_source_is_a_clear_error(tmp_path, capsys):
    assert main(["--source", str(tmp_path), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "has none of mbpp.jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--source", str(tmp_path), "--out", "x", "--split", "nonsense"])
