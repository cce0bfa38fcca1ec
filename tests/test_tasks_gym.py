"""reasoning-gym datasets as tasks: generation into disjoint splits, grading by the dataset's own
score_answer, config errors, and the step-checking rationales of mini_sudoku and countdown."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrm_ray import prompts
from genrm_ray.config import ConfigError
from genrm_ray.data import sft
from genrm_ray.data.sft import LabelledSolution
from genrm_ray.tasks import get_task
from genrm_ray.tasks.config import TaskConfig, load_problems
from genrm_ray.tasks.countdown import parse_question, solve
from genrm_ray.tasks.gym import answer_block
from genrm_ray.tasks.sudoku import grid_text, parse_grid, parse_puzzle

SUDOKU = get_task("mini_sudoku", {"min_empty": 6, "max_empty": 10})
COUNTDOWN = get_task("countdown")
SUDOKU_PROBLEMS = SUDOKU.generate("train", 40, seed=3)
COUNTDOWN_PROBLEMS = COUNTDOWN.generate("train", 40, seed=3)


def verdict_and_lines(task, problem, solution, rationale_format="quoted"):
    rationale = task.verification_rationale(problem, solution, rationale_format)
    *lines, last = rationale.split("\n")
    assert last.startswith(prompts.DIRECT_QUESTION)
    return last.endswith(prompts.YES), lines


# ---- the wrapper ----------------------------------------------------------------------------------


def test_generation_is_seeded_and_splits_are_disjoint():
    again = get_task("mini_sudoku", {"min_empty": 6, "max_empty": 10}).generate("train", 40, seed=3)
    assert [p.question for p in again] == [p.question for p in SUDOKU_PROBLEMS]
    other_seed = SUDOKU.generate("train", 40, seed=4)
    assert {p.question for p in other_seed} != {p.question for p in SUDOKU_PROBLEMS}
    splits = {s: {p.question for p in SUDOKU.generate(s, 30, seed=0)} for s in ("train", "validation", "test")}
    assert not splits["train"] & splits["validation"] and not splits["train"] & splits["test"]
    assert not splits["validation"] & splits["test"]


def test_options_reach_the_generator():
    easy = get_task("mini_sudoku", {"min_empty": 4, "max_empty": 4}).generate("train", 10, seed=0)
    hard = get_task("mini_sudoku", {"min_empty": 10, "max_empty": 10}).generate("train", 10, seed=0)
    assert all(sum(row.count("_") for row in parse_puzzle(p.question)) == 4 for p in easy)
    assert all(sum(row.count("_") for row in parse_puzzle(p.question)) >= 9 for p in hard)


def test_grading_is_reasoning_gyms_score_answer():
    rng = random.Random(0)
    for task, problems in ((SUDOKU, SUDOKU_PROBLEMS), (COUNTDOWN, COUNTDOWN_PROBLEMS)):
        for p in problems[:10]:
            entry = p.meta["rg_entry"]
            for c in task.candidate_solutions(p, 5, rng):
                answer = task.extract_answer(c.solution)
                assert c.correct == (answer is not None and task.dataset.score_answer(answer, entry) == 1.0)
    # reasoning-gym gives a right grid with trailing text partial credit: not correct here
    p = SUDOKU_PROBLEMS[0]
    assert SUDOKU.is_correct(SUDOKU.reference_solution(p), p)
    padded = SUDOKU.reference_solution(p) + "\nI hope this helps."
    assert 0 < SUDOKU.score(SUDOKU.extract_answer(padded), p) < 1 and not SUDOKU.is_correct(padded, p)
    # countdown: another valid expression is right too (the checker evaluates it)
    q = next(p for p in COUNTDOWN_PROBLEMS if "+" in p.answer)
    numbers, target = parse_question(q.question)
    assert COUNTDOWN.is_correct(answer_block(f"{target} - {target} + " + q.answer), q) is False  # numbers not given
    assert COUNTDOWN.is_correct(answer_block(q.answer.replace(" ", "")), q)


def test_any_reasoning_gym_dataset_by_name_works_direct():
    task = get_task("basic_arithmetic", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1})
    problems = task.generate("train", 8, seed=0)
    assert prompts.problem_noun("basic_arithmetic") == "basic arithmetic problems"
    rng = random.Random(0)
    labelled = [LabelledSolution(p, c.solution, c.correct) for p in problems for c in task.candidate_solutions(p, 3, rng)]
    assert any(x.correct for x in labelled) and not all(x.correct for x in labelled)
    records = sft.build_verify_direct(labelled, balance=False)
    assert records and all(r.prompt.endswith(prompts.DIRECT_QUESTION) for r in records)
    with pytest.raises(NotImplementedError, match="no programmatic verification rationale"):
        task.verification_rationale(problems[0], task.reference_solution(problems[0]))
    # teacher synthesis needs only the prompt formats
    teacher = prompts.reference_guided_verify_prompt(task.name, problems[0].question, "The answer is:\n3", problems[0].answer)
    assert teacher.endswith(prompts.COT_TRIGGER) and problems[0].answer in teacher


@pytest.mark.parametrize(("task", "options", "message"), [
    ("mini_sudokuu", {}, "unknown task 'mini_sudokuu'"),
    ("mini_sudoku", {"min_empty": 20}, "invalid settings"),
    ("mini_sudoku", {"blanks": 4}, "has no setting 'blanks'"),
    ("mini_sudoku", {"seed": 4}, "set by genrm-ray"),
    ("arithmetic", {"max_steps": 2}, "takes no options"),
])
def test_bad_names_and_settings_stop_with_the_key(task, options, message):
    with pytest.raises(ConfigError, match="data.task") as e:
        load_problems(TaskConfig(name=task, n_train=2, n_heldout=2, options=options), "data.task")
    assert message in str(e.value)


def test_problems_file_is_refused_for_generated_tasks(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(ConfigError, match="reads no problems file"):
        load_problems(TaskConfig(name="mini_sudoku", n_train=1, n_heldout=0, file=str(path)))


# ---- rationales: the verdict is the checker's, and every line passes exactly then ------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SUDOKU_PROBLEMS) - 1), st.sampled_from(["solution", "random", "cell", "swap", "rows", "text"]),
       st.sampled_from(SUDOKU.rationale_formats), st.randoms(use_true_random=False))
def test_sudoku_rationale_verdict_equals_the_checker(i, kind, rationale_format, rng):
    p = SUDOKU_PROBLEMS[i]
    grid = parse_grid(p.answer)
    if kind == "random":
        grid = [[str(rng.randint(1, 4)) for _ in range(4)] for _ in range(4)]
    elif kind == "cell":
        grid[rng.randrange(4)][rng.randrange(4)] = str(rng.randint(1, 4))
    elif kind == "swap":
        r1, c1, r2, c2 = (rng.randrange(4) for _ in range(4))
        grid[r1][c1], grid[r2][c2] = grid[r2][c2], grid[r1][c1]
    elif kind == "rows":
        rng.shuffle(grid)
    solution = answer_block(grid_text(grid)) if kind != "text" else "The answer is:\n1 2 3\n4 1 2 3"
    verdict, lines = verdict_and_lines(SUDOKU, p, solution, rationale_format)
    assert verdict == SUDOKU.is_correct(solution, p)
    assert verdict == all(line.endswith("Correct.") for line in lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(COUNTDOWN_PROBLEMS) - 1), st.sampled_from(["reference", "random", "perturbed"]),
       st.randoms(use_true_random=False))
def test_countdown_rationale_verdict_equals_the_checker(i, kind, rng):
    p = COUNTDOWN_PROBLEMS[i]
    numbers, target = parse_question(p.question)
    if kind == "reference":
        solution = COUNTDOWN.reference_solution(p)
    elif kind == "perturbed":
        solution = COUNTDOWN.perturb(p, rng.choice(COUNTDOWN.perturbation_kinds()), rng) or COUNTDOWN.reference_solution(p)
    else:  # a random chain over the given numbers, right or wrong
        pool = numbers[:]
        rng.shuffle(pool)
        steps, value = [], pool[0]
        for b in pool[1:]:
            op = rng.choice("+-*")
            new = {"+": value + b, "-": value - b, "*": value * b}[op]
            if new < 0:
                op, new = "+", value + b
            steps.append(f"{value} {op} {b} = {new}")
            value = new
        expr = str(pool[0])
        for line in steps:
            _, op, b, *_ = line.split()
            expr = f"({expr} {op} {b})"
        solution = "\n".join([*steps, answer_block(expr[1:-1] if expr.startswith("(") else expr)])
    verdict, lines = verdict_and_lines(COUNTDOWN, p, solution)
    assert verdict == COUNTDOWN.is_correct(solution, p)
    assert verdict == all(line.endswith("Correct.") for line in lines)


def test_programmatic_wrong_candidates_are_graded_wrong():
    rng = random.Random(1)
    for task, problems in ((SUDOKU, SUDOKU_PROBLEMS), (COUNTDOWN, COUNTDOWN_PROBLEMS)):
        seen = set()
        for p in problems:
            for kind in task.perturbation_kinds():
                text = task.perturb(p, kind, rng)
                if text is not None:
                    seen.add(kind)
                    assert not task.is_correct(text, p), (kind, text)
        assert seen == set(task.perturbation_kinds())


def test_rationale_lines_compare_without_solving():
    p = SUDOKU_PROBLEMS[0]
    _, lines = verdict_and_lines(SUDOKU, p, SUDOKU.reference_solution(p))
    assert [line.split(":")[0] for line in lines] == [f"{k} {i}" for k in ("Row", "Column", "Box") for i in range(1, 5)]
    assert lines[0].startswith("Row 1: " + p.answer.split("\n")[0] + "; puzzle ")
    q = COUNTDOWN_PROBLEMS[0]
    _, lines = verdict_and_lines(COUNTDOWN, q, COUNTDOWN.reference_solution(q))
    assert lines[0].startswith("Step 1: ") and any(line.startswith("Numbers: the answer uses") for line in lines)
    assert solve([2, 3, 4], 14, ("+", "*")) is not None and solve([2, 3, 4], 100, ("+", "*")) is None


def test_sudoku_cells_and_flagged_formats_name_every_cell_and_flag_a_changed_given():
    p = SUDOKU_PROBLEMS[0]
    puzzle, grid = parse_puzzle(p.question), parse_grid(p.answer)
    _, lines = verdict_and_lines(SUDOKU, p, SUDOKU.reference_solution(p), "cells")
    labels = [line.split(":")[0] for line in lines]
    assert labels == [f"Row {i}" for i in range(1, 5)] + [f"Column {c}" for c in "abcd"] + [f"Box {i}" for i in range(1, 5)]
    assert lines[0].startswith("Row 1: " + " ".join(f"{c}1={d}" for c, d in zip("abcd", grid[0])) + "; puzzle ")
    assert lines[4] == "Column a: " + " ".join(f"a{r + 1}={grid[r][0]}" for r in range(4)) + ". Correct."
    assert lines[8] == f"Box 1: a1={grid[0][0]} b1={grid[0][1]} a2={grid[1][0]} b2={grid[1][1]}. Correct."
    r, c = next((r, c) for r in range(4) for c in range(4) if puzzle[r][c] != "_")
    changed = [row[:] for row in grid]
    changed[r][c] = next(d for d in "1234" if d != grid[r][c])
    verdict, lines = verdict_and_lines(SUDOKU, p, answer_block(grid_text(changed)), "cells")
    assert not verdict
    assert f"{'abcd'[c]}{r + 1} {puzzle[r][c]} changed" in lines[r] and lines[r].endswith("Wrong.")
    # flagged: the puzzle's symbol beside each cell, a changed given flagged inside the brackets.
    _, lines = verdict_and_lines(SUDOKU, p, SUDOKU.reference_solution(p), "flagged")
    assert lines[0] == "Row 1: " + " ".join(f"{c}1={d} ({g})" for c, d, g in zip("abcd", grid[0], puzzle[0])) + ". Correct."
    assert lines[4:] == verdict_and_lines(SUDOKU, p, SUDOKU.reference_solution(p), "cells")[1][4:]
    verdict, lines = verdict_and_lines(SUDOKU, p, answer_block(grid_text(changed)), "flagged")
    assert not verdict and f"{'abcd'[c]}{r + 1}={changed[r][c]} ({puzzle[r][c]} changed)" in lines[r]
    assert lines[r].endswith("Wrong.") and sum("changed" in line for line in lines) == 1
    with pytest.raises(ValueError, match="unknown rationale format"):
        SUDOKU.check_lines(p.question, p.answer, "nope")
