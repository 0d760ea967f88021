"""Comparing two judges of the same answers (analysis.judge_agreement)."""

import json
import shutil

from analysis.judge_agreement import _probe, failed_tests, main

SUBTRACTS = "def add(a, b):\n    return a - b\n"


def test_probe_names_the_value_an_assert_checks():
    assert _probe("assert add(2, 3) == 5") == "add(2, 3)"
    assert _probe("assert __import__('math').isclose(f([1, 2]), 0.5, rel_tol=1e-6)") == "f([1, 2])"
    assert _probe("assert is_even(4)") == "is_even(4)"
    assert _probe("assert isclose(f(1), 2.0)") == "f(1)"
    assert _probe("add(2, 3) == 5") is None  # not an assert
    assert _probe("assert (") is None


def test_failed_tests_show_what_the_program_returned():
    tests = ["assert add(2, 0) == 2", "assert add(2, 3) == 5",
             "assert __import__('math').isclose(add(1, 1), 2.0)", "assert add(1, None) == 1"]
    failures = failed_tests(SUBTRACTS, tests)
    assert [(f.test, f.returned) for f in failures] == [
        (tests[1], "-1"), (tests[2], "0"), (tests[3], "raised TypeError")]
    assert failed_tests(SUBTRACTS, tests[:1]) == []


def test_a_program_that_cannot_run_is_one_failure_saying_why():
    failures = failed_tests("def add(a, b)\n    return a + b\n", ["assert add(1, 1) == 2"])
    assert len(failures) == 1 and failures[0].test == "(the program as a whole)"
    assert "SyntaxError" in failures[0].returned


def _rewrite(run_dir, change):
    path = run_dir / "problems.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(r)) + "\n" for r in records))
    return records


def test_disagreements_are_counted_and_explained(analysis_sweep, tmp_path, capsys):
    source = analysis_sweep / "gsm8k-cpu" / "large"
    strict, lenient = tmp_path / "strict" / "large", tmp_path / "lenient" / "large"
    shutil.copytree(source, strict)
    shutil.copytree(source, lenient)
    records = [json.loads(line) for line in (source / "problems.jsonl").read_text().splitlines()]
    right = [r["id"] for r in records if r["correct"]]
    wrong = [r["id"] for r in records if not r["correct"]]
    assert len(right) >= 3 and wrong
    demoted, promoted, changed = right[:2], wrong[0], right[2]

    def judge_strictly(record):
        if record["id"] in demoted:
            record.update(correct=False, answer=SUBTRACTS)
        elif record["id"] == promoted:
            record["correct"] = True
        elif record["id"] == changed:
            record["answer"] = "another answer"
        return record

    def answer_alike(record):
        if record["id"] in demoted:
            record["answer"] = SUBTRACTS
        return record

    _rewrite(strict, judge_strictly)
    _rewrite(lenient, answer_alike)
    tests = tmp_path / "strict_tests.jsonl"
    tests.write_text("".join(json.dumps({"task_id": pid, "test_list": ["assert add(0, 0) == 0",
                                                                       "assert add(1, 2) == 3"]}) + "\n"
                             for pid in demoted))
    main([str(tmp_path / "strict"), str(tmp_path / "lenient"), "--tests", str(tests)])
    text = capsys.readouterr().out
    n = len(records) - 1
    row = f"| large | {n} | {len(right) - 3} | 2 | 1 | {len(wrong) - 1} | 1 |"
    assert row in text
    for pid in demoted:
        assert f"- task {pid}: fails 1 strict test(s)" in text
    assert "`assert add(1, 2) == 3` returned `-1`" in text

    out = tmp_path / "agreement.md"
    main([str(tmp_path / "strict"), str(tmp_path / "lenient"), "--out", str(out)])
    assert row in out.read_text() and "returned" not in out.read_text()
