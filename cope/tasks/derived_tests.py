"""Extended tests for MBPP, derived from its reference solutions (for when MBPP-ET is absent).

COPE's stages keep a code candidate when it passes MBPP's three given asserts, and the paper
judges the final program on MBPP-ET's extended tests. Judged on the given asserts instead,
the stage filter *is* the judge: a program that only fits the three examples (say, one
that removes every "l" from "hello" where the task asks for the first and last) counts as
right, and every method that filters by the given tests gains over one that does not.

This module derives a separate judge the way EvalPlus builds MBPP+: it mutates the given
asserts' arguments, type by type, and asks the reference solution (in the sandbox) what
the function returns on each new input. A derived test keeps the given assert's shape,
`assert f(<new arguments>) == <reference's value>`. Inputs stay close to the given ones
(small integer steps, edits drawn from a string's own characters, list elements mutated,
added or dropped) and keep the properties that all given inputs share (`Shape`): lower
bounds, digits, sorted lists, `k <= n`, an argument that is another's length. An input on which the reference raises, runs too long, returns something that is not a
literal, or answers differently in a second process (set order under another hash seed)
is dropped. The file is the same under any hash seed; only a reference that runs close to
the per-call limit (2 s) can make it differ on a slower machine.

The judge is stricter than MBPP-ET and noisier: a mutated input can fall outside a task's
unstated preconditions, or hit a tie the task leaves open, where a correct program may
differ from the reference. The file records the given tests first, so every program the
given tests reject is rejected here too.

    python -m cope.tasks.derived_tests --source ../shared/data --split test train \
        --out derived.jsonl
    cope task=mbpp task.source=../shared/data task.hidden_tests=derived.jsonl
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cope.errors import DataError
from cope.records import write_atomic
from cope.sandbox import Sandbox, default_sandbox
from cope.tasks.code_data import MBPP_SPLITS
from cope.tasks.data_files import read_data_lines, require, resolve_source

# a probe line starts with this, so that what the reference prints itself is ignored
_PROBE = "@@derived-test@@"
_MAX_VALUE_CHARS = 1000


@dataclass(frozen=True)
class GivenCall:
    """One given assert, `assert name(args) == expected`, with its arguments as values."""

    name: str
    args: tuple[Any, ...]


def parse_given(test: str) -> GivenCall | None:
    """The call in an `assert f(literal, ...) == literal` test; None for any other shape."""
    try:
        module = ast.parse(test)
    except SyntaxError:
        return None
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Assert):
        return None
    check = module.body[0].test
    if not (isinstance(check, ast.Compare) and len(check.ops) == 1
            and isinstance(check.ops[0], ast.Eq)):
        return None
    call = check.left
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords):
        return None
    try:
        args = tuple(ast.literal_eval(arg) for arg in call.args)
        ast.literal_eval(check.comparators[0])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return GivenCall(call.func.id, args)


def _is_sorted(value: Any) -> bool:
    try:
        return isinstance(value, (list, tuple)) and len(value) >= 2 and list(value) == sorted(value)
    except TypeError:
        return False


def _nested_ints(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [number for item in value for number in _nested_ints(item)]
    if isinstance(value, dict):
        return [number for item in value.values() for number in _nested_ints(item)]
    return []


def _clamp_nested(value: Any, low: int | None, high: int | None) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        value = max(value, low) if low is not None else value
        return min(value, high) if high is not None else value
    if isinstance(value, (list, tuple)):
        return type(value)(_clamp_nested(item, low, high) for item in value)
    if isinstance(value, dict):
        return {key: _clamp_nested(item, low, high) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Shape:
    """What every given input has in common, argument by argument, that mutation keeps.

    The rules keep mutated inputs inside a task's unstated domain, where the reference's
    answer is the task's answer: a count stays at least the smallest given one, digits stay
    digits, `k <= n` stays so, a length stays the length of its list.
    """

    floors: dict[int, int]             # integer argument -> its smallest given value (all >= 0)
    item_bounds: dict[int, tuple[int | None, int | None]]  # sequence argument -> bounds of its ints
    sorted_args: frozenset[int]        # sequence arguments always in ascending order
    at_most: tuple[tuple[int, int], ...]  # (i, j): argument i never exceeded argument j
    length_of: dict[int, int]          # integer argument -> the argument whose length it is

    @classmethod
    def of(cls, calls: list[GivenCall]) -> "Shape":
        positions = range(len(calls[0].args))

        def always(test) -> set[int]:
            return {i for i in positions if all(test(call.args[i]) for call in calls)}

        ints = always(lambda v: isinstance(v, int) and not isinstance(v, bool))
        containers = always(lambda v: isinstance(v, (list, tuple, dict)))
        sequences = always(lambda v: isinstance(v, (list, tuple, str)))
        floors = {i: min(call.args[i] for call in calls) for i in ints
                  if all(call.args[i] >= 0 for call in calls)}
        item_bounds = {}
        for i in containers:
            numbers = [n for call in calls for n in _nested_ints(call.args[i])]
            if numbers and min(numbers) >= 0:
                item_bounds[i] = (0, 9 if max(numbers) <= 9 else None)
        at_most = tuple((i, j) for i in sorted(ints) for j in sorted(ints) if i != j
                        and all(call.args[i] <= call.args[j] for call in calls)
                        and any(call.args[i] < call.args[j] for call in calls))
        length_of = {}
        for i in sorted(ints):
            for j in sorted(sequences):
                if all(call.args[i] == len(call.args[j]) for call in calls):
                    length_of[i] = j
                    break
        return cls(floors=floors, item_bounds=item_bounds,
                   sorted_args=frozenset(always(_is_sorted)), at_most=at_most,
                   length_of=length_of)


def mutate_value(value: Any, rng: random.Random, nested: bool = False) -> Any:
    """A nearby value of the same type (bools, None and one-character strings stay). Only
    an argument itself grows or shrinks: a record inside it (a pair in a list of pairs)
    keeps its length."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return rng.choice([value + rng.randint(1, 5), value - rng.randint(1, 5), value * 2,
                           rng.randint(0, 2 * abs(value) + 10)])
    if isinstance(value, float):
        return round(value * rng.uniform(0.5, 1.5) + rng.uniform(-1, 1), 2)
    if isinstance(value, str):
        return _mutate_string(value, rng)
    if isinstance(value, (list, tuple)):
        return type(value)(_mutate_items(list(value), rng, resize=not nested))
    if isinstance(value, dict):
        return {key: mutate_value(item, rng, nested=True) if rng.random() < 0.5 else item
                for key, item in value.items()}
    return value  # sets, bytes, complex numbers: rare in MBPP, kept as given


def _mutate_string(text: str, rng: random.Random) -> str:
    if len(text) <= 1:  # usually a character the task looks for
        return text
    if text.isdigit():
        alphabet = string.digits
    elif text.isalpha() and text.islower():
        alphabet = string.ascii_lowercase
    else:
        alphabet = "".join(sorted(set(text)))
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        operation = rng.choice(["replace", "insert", "delete", "swap"])
        position = rng.randrange(len(chars))
        if operation == "replace":
            chars[position] = rng.choice(alphabet)
        elif operation == "insert":
            chars.insert(position, rng.choice(chars + list(alphabet)))
        elif operation == "delete" and len(chars) > 1:
            del chars[position]
        elif operation == "swap":
            other = rng.randrange(len(chars))
            chars[position], chars[other] = chars[other], chars[position]
    return "".join(chars)


def _mutate_items(items: list[Any], rng: random.Random, resize: bool) -> list[Any]:
    items = [mutate_value(item, rng, nested=True) if rng.random() < 0.5 else item
             for item in items]
    if resize and items and rng.random() < 0.3:
        new_item = mutate_value(rng.choice(items), rng, nested=True)
        items.insert(rng.randrange(len(items) + 1), new_item)
    if resize and len(items) > 1 and rng.random() < 0.2:
        del items[rng.randrange(len(items))]
    if rng.random() < 0.2:
        rng.shuffle(items)
    return items


def mutate_args(args: tuple[Any, ...], shape: Shape, rng: random.Random) -> tuple[Any, ...]:
    """New arguments for one call; each argument changes with probability 1/2 (one at least)."""
    changed = [rng.random() < 0.5 for _ in args]
    if args and not any(changed):
        changed[rng.randrange(len(args))] = True
    new = [mutate_value(arg, rng) if change else arg for arg, change in zip(args, changed)]
    for i, (low, high) in shape.item_bounds.items():
        new[i] = _clamp_nested(new[i], low, high)
    for i in shape.sorted_args:
        try:
            new[i] = type(new[i])(sorted(new[i]))
        except TypeError:
            pass
    for i, floor in shape.floors.items():
        new[i] = max(new[i], floor)
    for i, j in shape.at_most:
        if new[i] > new[j]:
            new[i], new[j] = new[j], new[i]
    for i, j in shape.length_of.items():
        new[i] = len(new[j])
    return tuple(new)


def _call_text(name: str, args: tuple[Any, ...]) -> str:
    return f"{name}({', '.join(literal_text(arg) for arg in args)})"


def _probe_program(reference: str, setup: str, calls: list[str], seconds: float) -> str:
    """The reference, then each call under its own time limit, printing repr of the result."""
    lines = [setup, reference, "import signal as _signal, json as _json",
             "def _expire(*_):\n    raise TimeoutError",
             "_signal.signal(_signal.SIGALRM, _expire)"]
    for index, call in enumerate(calls):
        lines.append(
            f"try:\n    _signal.setitimer(_signal.ITIMER_REAL, {seconds})\n"
            f"    _value = repr({call})\n    _signal.setitimer(_signal.ITIMER_REAL, 0)\n"
            f"    print({_PROBE!r}, _json.dumps([{index}, _value]), flush=True)\n"
            f"except BaseException:\n    _signal.setitimer(_signal.ITIMER_REAL, 0)")
    return "\n".join(lines) + "\n"


def _probe_values(stdout: str) -> dict[int, Any]:
    values = {}
    for line in stdout.splitlines():
        if not line.startswith(_PROBE + " "):
            continue
        try:
            index, text = json.loads(line[len(_PROBE) + 1:])
            if len(text) > _MAX_VALUE_CHARS:
                continue
            # a non-literal (an object, nan, inf) cannot be written into a test
            values[index] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return values


def literal_text(value: Any) -> str:
    """repr, with the members of sets in sorted order, so that the file is the same from
    one derivation to the next (a set's own order follows the process's hash seed)."""
    if isinstance(value, (set, frozenset)):
        members = sorted(literal_text(member) for member in value)
        text = "{" + ", ".join(members) + "}" if members else "set()"
        return text if isinstance(value, set) else f"frozenset({text})"
    if isinstance(value, list):
        return "[" + ", ".join(literal_text(item) for item in value) + "]"
    if isinstance(value, tuple):
        items = [literal_text(item) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal_text(k)}: {literal_text(v)}"
                               for k, v in value.items()) + "}"
    return repr(value)


def _test_text(call: str, value: Any) -> str:
    if isinstance(value, float):  # another summation order may differ in the last bits
        return f"assert __import__('math').isclose({call}, {value!r}, rel_tol=1e-6, abs_tol=1e-9)"
    return f"assert {call} == {literal_text(value)}"


def derive_tests(record: dict[str, Any], count: int = 20, attempts: int = 80, seed: int = 0,
                 sandbox: Sandbox | None = None, timeout: float = 20.0) -> list[str]:
    """Up to `count` new tests for one MBPP record (its given tests not included)."""
    sandbox = sandbox or default_sandbox()
    calls = [parse_given(test) for test in record["test_list"]]
    if not calls or any(call is None for call in calls):
        return []
    names = {call.name for call in calls}
    widths = {len(call.args) for call in calls}
    if len(names) != 1 or len(widths) != 1 or widths == {0}:
        return []
    name = names.pop()
    shape = Shape.of(calls)
    rng = random.Random(f"{seed}:{record['task_id']}")
    given = {literal_text(call.args) for call in calls}
    candidates: dict[str, tuple[Any, ...]] = {}
    for attempt in range(attempts):
        args = mutate_args(calls[attempt % len(calls)].args, shape, rng)
        key = literal_text(args)
        if key not in given and len(key) <= _MAX_VALUE_CHARS:
            candidates.setdefault(key, args)
    texts = [_call_text(name, args) for args in candidates.values()]
    if not texts:
        return []
    setup = record.get("test_setup_code") or ""
    program = _probe_program(record["code"], setup, texts, seconds=min(2.0, timeout / 4))
    # two processes, two hash seeds: an answer that depends on set order differs between them
    first, second = (_probe_values(sandbox.run_program(program, timeout).stdout)
                     for _ in range(2))
    stable = [(texts[i], value) for i, value in first.items()
              if i in second and second[i] == value and type(second[i]) is type(value)]
    return _spread(stable, count)


def _spread(tests: list[tuple[str, Any]], count: int) -> list[str]:
    """`count` tests, new expected values first, so that few share the same answer."""
    seen: dict[str, int] = {}
    ranked = []
    for position, (call, value) in enumerate(tests):
        key = literal_text(value)
        ranked.append((seen.get(key, 0), position, call, value))
        seen[key] = seen.get(key, 0) + 1
    ranked.sort(key=lambda item: (item[0], item[1]))
    chosen = sorted(ranked[:count], key=lambda item: item[1])
    return [_test_text(call, value) for _, _, call, value in chosen]


def derive_file(source: str, out: Path, splits: tuple[str, ...] = ("test",), count: int = 20,
                seed: int = 0, sandbox: Sandbox | None = None) -> dict[str, int]:
    """Write an MBPP-ET-shaped file (task_id, test_list = given + derived) for some splits."""
    sandbox = sandbox or default_sandbox()
    path = resolve_source(source, ("mbpp.jsonl",))  # a source is always given here
    ranges = [MBPP_SPLITS[split] for split in splits]
    records = []
    for number, record in read_data_lines(path):
        for key in ("task_id", "code", "test_list"):
            require(record, key, path, number)
        if any(low <= int(record["task_id"]) <= high for low, high in ranges):
            records.append(record)
    totals = {"problems": 0, "with_derived": 0, "derived_tests": 0, "rejected_by_reference": 0}
    lines = []
    for record in records:
        derived = derive_tests(record, count=count, seed=seed, sandbox=sandbox)
        given = list(record["test_list"])
        # the reference must pass the whole list as the judge will run it
        if derived and not sandbox.run_tests(record["code"], given + derived, 30.0,
                                             record.get("test_setup_code") or "").passed:
            totals["rejected_by_reference"] += 1
            derived = []
        totals["problems"] += 1
        totals["with_derived"] += bool(derived)
        totals["derived_tests"] += len(derived)
        lines.append(json.dumps({"task_id": record["task_id"], "test_list": given + derived,
                                 "given": len(given), "derived": len(derived)}))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "\n".join(lines) + "\n")
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cope.tasks.derived_tests",
        description="Derive extended hidden tests for MBPP from its reference solutions "
                    "(an MBPP-ET-shaped file for task.hidden_tests).")
    parser.add_argument("--source", required=True, help="mbpp.jsonl, or a directory holding it")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--split", nargs="+", default=["test"], choices=sorted(MBPP_SPLITS),
                        help="MBPP splits to cover (FrugalGPT's scorer trains on train)")
    parser.add_argument("--count", type=int, default=20, help="derived tests per problem, at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        totals = derive_file(args.source, args.out, tuple(args.split), args.count,
                             args.seed)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
