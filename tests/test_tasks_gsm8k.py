"""GSM8K: the loader on 200 real rows, reference solutions, grading, rationales and candidates."""

import json
import random
import re
from fractions import Fraction

import pytest

from genrm_ray.prompts import DIRECT_QUESTION, NO, YES
from genrm_ray.tasks import get_task
from tests.fixtures.data import GSM8K_HEAD  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return get_task("gsm8k")


@pytest.fixture(scope="module")
def problems(task):
    return task.load(GSM8K_HEAD)


@pytest.fixture(scope="module")
def rows():
    with open(GSM8K_HEAD) as f:
        return [json.loads(line) for line in f]


def test_loads_all_200_problems_with_numeric_answers(problems, rows):
    assert len(problems) == 200 and len({p.id for p in problems}) == 200
    for p, row in zip(problems, rows):
        assert p.task == "gsm8k" and p.question == row["question"].strip()
        final = row["answer"].strip().split("\n")[-1]
        assert final.startswith("#### ")
        assert Fraction(p.answer) == Fraction(final[5:].replace(",", ""))


def test_reference_solution_strips_annotations_and_ends_with_the_answer(task, problems, rows):
    for p, row in zip(problems, rows):
        solution = task.reference_solution(p)
        assert "<<" not in solution and ">>" not in solution and "####" not in solution
        assert solution.endswith(f"\nThe answer is {p.answer}.")
        assert task.is_correct(solution, p)
        # The worked lines are GSM8K's own, minus the annotations.
        original = re.sub(r"<<[^>]*>>", "", row["answer"]).strip().split("\n")[:-1]
        assert solution.split("\n")[:-1] == [line.rstrip() for line in original]
    first = task.reference_solution(problems[0])
    assert first == (
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May.\n"
        "The answer is 72."
    )


def test_the_original_gsm8k_answer_text_is_graded_correct(task, problems, rows):
    assert all(task.is_correct(row["answer"], p) for p, row in zip(problems, rows))
    assert not task.is_correct(rows[1]["answer"], problems[0])


def test_rationales_check_the_arithmetic_of_real_solutions(task, problems):
    flagged = []
    for p in problems:
        rationale = task.verification_rationale(p, task.reference_solution(p))
        assert rationale.endswith(DIRECT_QUESTION + YES)
        if "wrong" in rationale.lower().split("final answer")[0]:
            flagged.append(rationale)
    # GSM8K's own references hold three real slips in the first 200 rows (e.g. 192*100=$1920);
    # everything else, units and fractions included, must not be flagged.
    assert len(flagged) == 3
    assert any("the solution says 192*100=$1920; 192 * 100 = 19200. Wrong." in r for r in flagged)
    rationale = task.verification_rationale(problems[0], task.reference_solution(problems[0]))
    # Each equation is quoted as GSM8K wrote it, then recomputed.
    assert rationale == "\n".join([
        "Step 1: the solution says 48/2 = 24; 48 / 2 = 24. Correct.",
        "Step 2: the solution says 48+24 = 72; 48 + 24 = 72. Correct.",
        "Final answer: the solution says 72; the correct answer is 72. Correct.",
        DIRECT_QUESTION + YES,
    ])  # fmt: skip


def test_carried_slip_propagates_into_later_steps(task, problems):
    p = problems[2]  # Betty: 100 / 2 = 50, 15 * 2 = 30, 100 - 50 - 30 - 15 = 5
    rng = random.Random(0)
    slips = [c for c in task.candidate_solutions(p, 40, rng) if c.kind == "carried_slip"]
    assert slips
    for c in slips:
        # The slipped step is wrong; every step after it is recomputed from the slipped value.
        rationale = task.verification_rationale(p, c.solution)
        step_lines = [line for line in rationale.split("\n") if line.startswith("Step ")]
        assert sum(line.endswith("Wrong.") for line in step_lines) == 1
        assert not c.correct and rationale.endswith(DIRECT_QUESTION + NO)


def test_candidates_are_graded_by_is_correct(task, problems):
    rng = random.Random(1)
    kinds = {}
    for p in problems:
        for c in task.candidate_solutions(p, 8, rng):
            assert c.correct == task.is_correct(c.solution, p)
            verdict = task.verification_rationale(p, c.solution).split("\n")[-1]
            assert verdict == DIRECT_QUESTION + (YES if c.correct else NO)
            kinds.setdefault(c.kind, []).append(c.correct)
    assert sum(map(len, kinds.values())) >= 1400
    assert set(kinds) == {"reference", "carried_slip", "skipped_step", "wrong_final", "truncated"}
    assert all(kinds["reference"]) and not any(kinds["wrong_final"]) and not any(kinds["truncated"])
    # A slip that never reaches the final answer leaves it right; the grade says so.
    assert sum(kinds["carried_slip"]) < len(kinds["carried_slip"]) / 4


@pytest.mark.parametrize(
    "answer, message",
    [
        ("She sold 72 clips.", "must end with a line '#### <number>'"),
        ("She sold 72 clips.\n#### many", "must end with a line '#### <number>'"),
    ],
)
def test_bad_gsm8k_answers_name_file_line_and_field(task, tmp_path, answer, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"question": "q", "answer": "1+1 = <<1+1=2>>2\n#### 2"})
    path.write_text(good + "\n" + json.dumps({"question": "q", "answer": answer}) + "\n")
    with pytest.raises(ValueError, match=rf"bad\.jsonl:2: field 'answer' {message}"):
        task.load(path)


def test_malformed_gsm8k_line_names_file_and_line(task, tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = open(GSM8K_HEAD).read().split("\n")[:3]
    path.write_text("\n".join(lines[:2] + [lines[2][:50]]) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: malformed JSON"):
        task.load(path)


def test_reference_needs_a_loaded_worked_solution(task):
    with pytest.raises(ValueError, match="no worked solution"):
        task.reference_solution(task.make_problem("q", "3"))
