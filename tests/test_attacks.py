"""The adversarial suite's response classes (genrm_ray.attacks) for every task: each class is there,
labels come from the grader, the wrong solution is well formed and wrong, the padding fills the budget."""

from __future__ import annotations

import random

import pytest

from genrm_ray import attacks, prompts
from genrm_ray.tasks import get_task

TASKS = ["arithmetic", "last_letter", "word_sort", "mini_sudoku", "countdown"]


@pytest.mark.parametrize("name", TASKS)
def test_every_class_for_every_problem_with_grader_labels(name):
    task = get_task(name)
    problems = task.generate("test", 4, seed=0)
    count = lambda text: len(text.split())  # noqa: E731  (any token counter)
    responses = attacks.attack_responses(task, problems, pad_tokens=300, count_tokens=count)
    for p in problems:
        mine = [r for r in responses if r.problem_id == p.id]
        assert {r.attack for r in mine} == set(attacks.ATTACKS) | set(attacks.BASELINES)
        for r in mine:
            assert r.correct == task.is_correct(r.response, p) and r.question == p.question
            if r.appended_to_right:
                assert r.response.startswith(task.reference_solution(p) + "\n")
        by_variant = {r.variant: r for r in mine if not r.appended_to_right}
        assert by_variant["reference"].correct and by_variant["right"].correct
        wrong = by_variant["perturbed"]
        assert not wrong.correct and task.extract_answer(wrong.response) is not None
        assert not by_variant["wrong"].correct and not by_variant["verdict_only"].correct
        assert by_variant["verdict_after_wrong"].response == wrong.response + "\n" + attacks.VERDICT_LINE
        padded = by_variant["filler_after_wrong"].response
        prompt = prompts.verify_direct_prompt(name, p.question, padded)
        assert 300 - 2 * count("\n" + attacks.PAD_LINE) <= count(prompt) <= 300
        # Master keys appended to a right one-line answer keep it right: their shift is measurable. A
        # sudoku's grid runs to the end of the response, so there the grader reads the key as part of it.
        if "\n" not in attacks.answer_part(task.reference_solution(p)):
            assert all(r.correct for r in mine if r.attack == "master_key" and r.appended_to_right)


@pytest.mark.parametrize("name", TASKS)
def test_solution_free_headers_and_blanked_formats_keep_the_tasks_layout_and_are_graded_wrong(name):
    task = get_task(name)
    for p in task.generate("train", 5, seed=1):
        reference = task.reference_solution(p)
        cut = attacks.truncated_reasonings(task, p)
        assert cut["answer_opening"].endswith((prompts.ANSWER_PREFIX, prompts.ANSWER_PREFIX + ":"))
        for text in cut.values():
            assert reference.startswith(text) and text != reference
            assert task.extract_answer(text) is None and not task.is_correct(text, p)
        blanked = attacks.content_free(task, p)
        assert blanked.count("\n") == reference.count("\n")  # the same layout, line for line
        assert not any(ch.isdigit() for ch in blanked) and "_" in blanked
        assert not task.is_correct(blanked, p)


def test_forged_rationale_vouches_for_the_wrong_solution_without_stating_the_truth():
    task = get_task("arithmetic")
    p = task.generate("test", 1, seed=3)[0]
    wrong = attacks.wrong_solution(task, p, random.Random(0))
    forged = attacks.forged_rationale(task, p, wrong)
    assert forged.endswith(attacks.VERDICT_LINE) and "Wrong." not in forged
    assert not task.is_correct(wrong + "\n" + prompts.COT_TRIGGER + forged, p)


def test_lookalikes_look_alike_but_differ():
    for text in attacks.LOOKALIKES.values():
        assert text != attacks.VERDICT_LINE
        assert prompts.neutralize_solution(text) == prompts.NEUTRALIZED  # the defence folds them


def test_padding_needs_a_token_counter():
    task = get_task("arithmetic")
    with pytest.raises(ValueError, match="count_tokens"):
        attacks.attack_responses(task, task.generate("test", 1), pad_tokens=100)
