"""The GenRM-CoT rationale diagnosis (genrm_ray.evaluation.rationales) on hand-made verifiers."""

from __future__ import annotations

import random
import re

import pytest

from genrm_ray.evaluation.pools import PoolProblem
from genrm_ray.evaluation.rationales import diagnose_rationales, step_lines
from genrm_ray.prompts import DIRECT_QUESTION
from genrm_ray.tasks import get_task


def as_sampled(rationale: str) -> str:
    """A programmatic rationale as the scorer keeps a sampled one: up to the verification question."""
    return rationale.rpartition(DIRECT_QUESTION)[0] + DIRECT_QUESTION


def copier(rationale: str) -> str:
    """A verifier that recomputes nothing: every line repeats the solution's claim and says Correct."""
    text = re.sub(r"^(Step \d+): the solution says (.*?); .*$", r"\1: the solution says \2; \2. Correct.",
                  as_sampled(rationale), flags=re.M)
    text = re.sub(r"^Final answer: the solution says (.*?); .*$",
                  r"Final answer: the solution says \1; the correct answer is \1. Correct.", text, flags=re.M)
    return re.sub(r"^The first wrong step.*\n", "", text, flags=re.M)


def pool_for(task_name: str, rationale_of) -> tuple[list[PoolProblem], int]:
    task = get_task(task_name)
    rng, pool, n_wrong = random.Random(0), [], 0
    for p in task.generate("test", 6, seed=1):
        solutions = [c.solution for c in task.candidate_solutions(p, 5, rng)]
        correct = [task.is_correct(s, p) for s in solutions]
        n_wrong += correct.count(False)
        pp = PoolProblem(p, solutions + solutions[:1], correct + correct[:1], [None] * (len(solutions) + 1))
        pp.rationales["v"] = [[rationale_of(task.verification_rationale(p, s))] * 2 for s in pp.solutions]
        pp.p_yes["v"] = [[0.9 if c else 0.1] * 2 for c in pp.correct]
        pool.append(pp)
    return pool, n_wrong


@pytest.mark.parametrize("task_name", ["arithmetic", "last_letter", "word_sort"])
def test_a_verifier_that_writes_the_programmatic_rationale_agrees_everywhere(task_name):
    pool, n_wrong = pool_for(task_name, as_sampled)
    d = diagnose_rationales(get_task(task_name), pool, "v")
    assert n_wrong > 0 and d["step_lines"] > 0
    assert d["rationales"] == 2 * sum(len(set(pp.solutions)) for pp in pool)  # copies counted once
    assert d["recomputed_agrees"] == d["verdict_agrees"] == d["verdict_follows_final_line"] == 1.0
    assert d["flags_wrong_solution"] == 1.0 and d["flags_right_solution"] == 0.0
    assert d["wrong_claim_lines"] > 0 and d["wrong_claim_recomputed"] == 1.0 and d["wrong_claim_copied"] == 0.0
    if task_name == "arithmetic":  # every arithmetic line compares numbers: its verdict is their equality
        assert d["verdict_follows_own_values"] == 1.0


def test_a_verifier_that_copies_the_claims_follows_itself_but_misses_the_slips():
    pool, _ = pool_for("arithmetic", copier)
    d = diagnose_rationales(get_task("arithmetic"), pool, "v")
    assert d["verdict_follows_own_values"] == 1.0  # claim == "recomputed" and Correct, every line
    assert d["wrong_claim_lines"] > 0 and d["wrong_claim_copied"] == 1.0 and d["wrong_claim_recomputed"] == 0.0
    # It flags only what needs no recomputation (skipped steps), and never a right solution.
    assert 0.0 < d["flags_wrong_solution"] < 1.0 and d["flags_right_solution"] == 0.0
    assert 0.3 < d["recomputed_agrees"] < 1.0 and 0.3 < d["verdict_agrees"] < 1.0
    # Its p(Yes) (0.9 on right, 0.1 on wrong solutions) no longer follows its own all-Correct lines.
    assert d["verdict_follows_final_line"] < 1.0


def test_step_lines_reads_claims_values_and_verdicts():
    text = ("Step 1: the solution says 5 * 7 = 36; 5 * 7 = 5 * 7 = 35. Wrong.\n"
            "Step 2: the solution skips this step; 127 - 35 = 92. Wrong.\n"
            'Step 3 (extra): the solution says the letters give "ab"; "a" and "b" give "ab". Correct.\n'
            "Final answer: the solution says 91; the correct answer is 92. Wrong.\n" + DIRECT_QUESTION)
    assert step_lines(text) == {
        "Step 1": {"kind": "says", "claim": "36", "recomputed": "35", "correct": False},
        "Step 2": {"kind": "skips", "claim": None, "recomputed": "92", "correct": False},
        "Step 3 (extra)": {"kind": "says", "claim": "ab", "recomputed": "ab", "correct": True},
        "Final answer": {"kind": "says", "claim": "91", "recomputed": "92", "correct": False},
    }
