"""Program-of-thought answers: real programs in real subprocesses."""

import os
import textwrap

import pytest

from cope.tasks.math_data import GSM8K, MATH500
from cope.tasks.base import Problem
from cope.tasks.program_of_thought import ProgramError, extract_program, printed_answer, run_program

PROBLEM = Problem(id="p", question="What is 3 * 4?", gold="12")


def fenced(code):
    return f"Here is a program:\n```python\n{textwrap.dedent(code).strip()}\n```\nIt prints the answer."


def test_a_program_that_prints_its_answer():
    output = run_program("x = 3 * 4\nprint('working')\nprint(x)\n", timeout=30)
    assert output.splitlines() == ["working", "12"]
    assert printed_answer(output) == "12"


def test_the_program_runs_isolated_in_a_scratch_directory(tmp_path):
    code = textwrap.dedent(f"""
        import os, sys
        print(os.getcwd(), sys.flags.isolated)
        try:
            open({str(tmp_path / "escaped")!r}, "w").write("x")
            print("wrote outside")
        except OSError:
            print("could not write outside")
    """)
    output = run_program(code, timeout=30)
    cwd, isolated = output.split()[:2]
    assert cwd != os.getcwd() and isolated == "1"
    assert "could not write outside" in output and not (tmp_path / "escaped").exists()


def test_a_crashing_program_is_an_error_naming_the_exception():
    with pytest.raises(ProgramError, match="ZeroDivisionError"):
        run_program("print(1)\nprint(1 / 0)\n", timeout=30)


def test_a_program_that_prints_nothing_is_an_error():
    with pytest.raises(ProgramError, match="printed nothing"):
        run_program("x = 1\n", timeout=30)


def test_a_program_past_its_timeout_gives_no_answer():
    code = textwrap.dedent("""
        import subprocess, time
        subprocess.Popen(["sleep", "300"])
        time.sleep(300)
        print(42)
    """)
    with pytest.raises(ProgramError, match="timed out after 2 s"):
        run_program(code, timeout=2)


def test_extract_program_takes_the_last_fenced_block_or_bare_code():
    text = fenced("print(1)") + "\n" + fenced("print(2)")
    assert extract_program(text) == "print(2)"
    assert extract_program("```\nprint(5)\n```") == "print(5)"
    assert extract_program("x = 2\nprint(x)") == "x = 2\nprint(x)"
    assert extract_program("The answer is 12, because 3 times 4 is 12.") is None
    assert extract_program("") is None


def test_math_task_reads_the_printed_answer():
    gsm8k = GSM8K(None)
    assert gsm8k.program_answer(PROBLEM, fenced("print(3 * 4)"), timeout=30) == "12"
    assert gsm8k.program_answer(PROBLEM, fenced("print(f'The total is {3*4} dollars')"), 30) == "12"
    math = MATH500(None)
    assert math.program_answer(PROBLEM, fenced("print('\\\\frac{1}{2}')"), 30) == "\\frac{1}{2}"
    assert math.program_answer(PROBLEM, fenced("print('x = 3')\nprint('\\\\boxed{7}')"), 30) == "7"


@pytest.mark.parametrize("response", [
    fenced("raise ValueError('no idea')"),
    fenced("x = 3 * 4"),
    fenced("print(("),
    "I cannot write a program for this.",
])
def test_a_failing_program_is_an_abstention(response):
    assert GSM8K(None).program_answer(PROBLEM, response, timeout=30) is None
