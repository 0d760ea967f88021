"""Where two judges of the same generations disagree, problem by problem.

The same answers can be judged twice: MBPP on its three given asserts and on extended tests
(`cope.tasks.derived_tests`), written to two roots by `experiments/cpu_reproduction/run.sh`.
For each method found in both roots this counts the problems both judges pass, only the
lenient one passes, only the strict one passes, and neither; with `--tests` it reruns every
answer the judges disagree on against the strict tests in the sandbox and shows the first
tests it fails and what the program returned, which is what a reader needs to tell a real
bug from a quirk of the judge.

    python -m analysis.judge_agreement experiments/results/mbpp-cpu \\
        experiments/results/mbpp-cpu-given --tests experiments/data/mbpp_derived_tests.jsonl
"""

from __future__ import annotations

import argparse
import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from cope.results.runs import find_runs, load_run
from cope.records import write_atomic
from cope.sandbox import run_program
from cope.tasks.code_data import read_hidden_tests


@dataclass
class Agreement:
    label: str
    both: list[str] = field(default_factory=list)
    lenient_only: list[str] = field(default_factory=list)  # the strict judge fails these
    strict_only: list[str] = field(default_factory=list)
    neither: list[str] = field(default_factory=list)
    # problems whose two runs answered differently (a method whose choices depend on the
    # judge, such as FrugalGPT's scorer trained on the judge's labels): not comparable
    different_answers: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.both) + len(self.lenient_only) + len(self.strict_only) + len(self.neither)


@dataclass
class FailedTest:
    test: str
    returned: str  # repr of what the tested call returned, or the exception it raised


def runs_by_label(root: str | Path) -> dict[str, dict]:
    return {run["label"]: run for run in map(load_run, find_runs(root))}


def agreement(label: str, strict: dict, lenient: dict) -> Agreement:
    """Verdicts of the two judges on the problems both runs finished with the same answer."""
    lenient_records = {p["id"]: p for p in lenient["problems"]}
    out = Agreement(label)
    bucket = {(True, True): out.both, (False, True): out.lenient_only,
              (True, False): out.strict_only, (False, False): out.neither}
    for a in strict["problems"]:  # in the run's order (load_run sorts them)
        b = lenient_records.get(a["id"])
        if b is None:
            continue
        if a.get("answer") != b.get("answer"):
            out.different_answers.append(a["id"])
            continue
        bucket[bool(a["correct"]), bool(b["correct"])].append(a["id"])
    return out


def _probe(test: str) -> str | None:
    """The expression whose value a failing assert should show: the left side of
    `assert f(x) == y`, the first argument of `assert math.isclose(f(x), y, ...)`, or else
    the asserted expression itself (`assert is_even(4)`)."""
    try:
        node = ast.parse(test).body[0]
    except (SyntaxError, IndexError):
        return None
    if not isinstance(node, ast.Assert):
        return None
    check = node.test
    if isinstance(check, ast.Compare) and len(check.ops) == 1 and isinstance(check.ops[0], ast.Eq):
        return ast.get_source_segment(test, check.left)
    if isinstance(check, ast.Call) and _called_name(check) == "isclose" and check.args:
        return ast.get_source_segment(test, check.args[0])
    return ast.get_source_segment(test, check)


def _called_name(call: ast.Call) -> str | None:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)


_PROBE_RUNNER = '''
import json as _json
for _test, _probe in _CHECKS:
    try:
        exec(_test, globals())
        continue
    except BaseException as _error:
        _returned = "raised " + type(_error).__name__
    if _probe is not None:
        try:
            _returned = repr(eval(_probe, globals()))[:200]
        except BaseException as _error:
            _returned = "raised " + type(_error).__name__
    print(_json.dumps([_test, _returned]))
'''


def failed_tests(program: str, tests: list[str], timeout: float = 30.0) -> list[FailedTest]:
    """Every test `program` fails, with what it returned, run in the sandbox. A program that
    dies before its tests run (syntax error, timeout) shows as one entry saying so."""
    checks = [(test, _probe(test)) for test in tests]
    result = run_program(f"{program}\n\n_CHECKS = {checks!r}\n{_PROBE_RUNNER}", timeout=timeout)
    failures = []
    for line in result.stdout.splitlines():
        try:
            test, returned = json.loads(line)
        except (ValueError, TypeError):
            continue  # the program's own printing
        failures.append(FailedTest(test, returned))
    if not result.ok:
        failures.append(FailedTest("(the program as a whole)", result.reason or "failed"))
    return failures


def agreement_markdown(agreements: list[Agreement], explained: dict[str, dict[str, list[FailedTest]]],
                       strict_name: str, lenient_name: str, shown: int = 3) -> str:
    lines = [f"# Judges compared: {strict_name} (strict) against {lenient_name} (lenient)", "",
             "Problems count where both runs gave the same answer; those answered differently "
             "(a method whose choices depend on its judge) are left out and counted apart.", "",
             "| method | problems | both pass | only lenient passes | only strict passes | neither "
             "| answered differently |",
             "|---|---|---|---|---|---|---|"]
    for a in agreements:
        lines.append(f"| {a.label} | {a.n} | {len(a.both)} | {len(a.lenient_only)} | "
                     f"{len(a.strict_only)} | {len(a.neither)} | {len(a.different_answers)} |")
    for a in agreements:
        if not a.lenient_only:
            continue
        lines += ["", f"## {a.label}: passes the lenient judge only",
                  "", "ids: " + ", ".join(a.lenient_only)]
        for pid, failures in explained.get(a.label, {}).items():
            lines += ["", f"- task {pid}: fails {len(failures)} strict test(s)"]
            for failure in failures[:shown]:
                lines.append(f"  - `{_one_line(failure.test)}` returned `{_one_line(failure.returned)}`")
    return "\n".join(lines) + "\n"


def _one_line(text: str, limit: int = 180) -> str:
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("strict", help="runs judged by the stricter tests")
    parser.add_argument("lenient", help="the same methods judged by the lenient tests")
    parser.add_argument("--tests", help="the strict judge's tests (a jsonl of task_id and "
                        "test_list): rerun each disagreement to show the tests it fails")
    parser.add_argument("--out", help="write the Markdown here instead of printing it")
    args = parser.parse_args(argv)
    strict, lenient = runs_by_label(args.strict), runs_by_label(args.lenient)
    common = [label for label in strict if label in lenient]
    if not common:
        raise SystemExit(f"no method has a run in both {args.strict} and {args.lenient}")
    agreements = [agreement(label, strict[label], lenient[label]) for label in common]
    explained: dict[str, dict[str, list[FailedTest]]] = {}
    if args.tests:
        tests = read_hidden_tests(args.tests)
        for a in agreements:
            answers = {p["id"]: p.get("answer") or "" for p in strict[a.label]["problems"]}
            explained[a.label] = {pid: failed_tests(answers[pid], tests[pid])
                                  for pid in a.lenient_only if pid in tests}
    text = agreement_markdown(agreements, explained, args.strict, args.lenient)
    if args.out:
        write_atomic(Path(args.out), text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
