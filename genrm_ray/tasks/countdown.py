"""Countdown from reasoning-gym: reach a target from given numbers. Solving is a search over
expressions; checking is a few small operations and comparisons of the numbers used with those given.

A solution writes one operation per line and the expression after ``The answer is:``:

    7 + 8 = 15
    15 - 4 = 11
    The answer is:
    (7 + 8) - 4

The programmatic rationale checks each step, that the last step reaches the target, that the answer
uses the given numbers once each, and that the answer is the expression the steps build:

    Step 1: 7 + 8 = 15; 7 + 8 is 15. Correct.
    Target: the last step gives 11; the target is 11. Correct.
    Numbers: the answer uses 7, 8, 4; given 4, 7, 8; each once. Correct.
    Answer: (7 + 8) - 4; the steps give (7 + 8) - 4. Correct.

When every line passes, the answer evaluates to the target with each number once, which is what
reasoning-gym's checker gives full credit for. The verdict is always the checker's; a solution the
checker accepts whose steps do not build its answer (none of the task's own solutions) is the one
case where a line fails under a Yes.
"""

from __future__ import annotations

import itertools
import random
import re
from fractions import Fraction
from typing import Any

from genrm_ray.tasks.base import CORRECT, WRONG, Problem
from genrm_ray.tasks.gym import ReasoningGymTask, answer_block, answer_start

_FORMAT_NOTES = "\n\nFinal answer format instructions:"  # reasoning-gym's, left out of the question
_TARGET = re.compile(r"(?:equals|make|Calculate)\s+(\d+)")
_NUMBERS = re.compile(r"numbers:?\s+(\d+(?:,\s*\d+)*)")
_STEP = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(-?\d+(?:\.\d+)?)\s*$", re.MULTILINE)
_INT = re.compile(r"\d+")

Step = tuple[int, str, int, Fraction]  # a op b = claimed value


def parse_question(question: str) -> tuple[list[int], int] | None:
    """(numbers as given, target) from the question text, or None."""
    t, n = _TARGET.search(question), _NUMBERS.search(question)
    if not t or not n:
        return None
    return [int(x) for x in re.split(r",\s*", n.group(1))], int(t.group(1))


def apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return None if b == 0 else a / b


def show(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):.4g}"


def _strip_outer(expr: str) -> str:
    return expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr


def solve(numbers: list[int], target: int, ops: tuple[str, ...] = ("+", "-", "*", "/")) -> list[tuple[int, str, int, int]] | None:
    """Steps (a, op, b, result) that combine all ``numbers`` into ``target`` with whole, non-negative
    intermediate results (depth-first, so the same problem always gets the same solution), or None."""

    def search(pool: list[int]) -> list[tuple[int, str, int, int]] | None:
        if len(pool) == 1:
            return [] if pool[0] == target else None
        for i, j in itertools.permutations(range(len(pool)), 2):
            a, b = pool[i], pool[j]
            for op in ops:
                if op in "+*" and i > j:
                    continue  # commutative: one order is enough
                value = apply(Fraction(a), op, Fraction(b))
                if value is None or value < 0 or value.denominator != 1:
                    continue
                rest = [x for k, x in enumerate(pool) if k not in (i, j)] + [int(value)]
                found = search(rest)
                if found is not None:
                    return [(a, op, b, int(value)), *found]
        return None

    return search(list(numbers))


def expression_of(steps: list[tuple[int, str, int, Any]]) -> str | None:
    """The expression the steps build: a step's operand is an earlier step's result where one was
    computed (the latest first), else a given number."""
    exprs: dict[str, list[str]] = {}
    last = None
    for a, op, b, value in steps:
        parts = []
        for x in (a, b):
            key = str(x)
            parts.append(exprs[key].pop() if exprs.get(key) else key)
        last = f"({parts[0]} {op} {parts[1]})"
        exprs.setdefault(show(Fraction(value)) if not isinstance(value, str) else value, []).append(last)
    return None if last is None else _strip_outer(last)


def solution_text(steps: list[tuple[int, str, int, Any]], answer: str) -> str:
    lines = [f"{a} {op} {b} = {show(Fraction(v)) if not isinstance(v, str) else v}" for a, op, b, v in steps]
    return "\n".join([*lines, answer_block(answer)])


def _norm(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


class CountdownTask(ReasoningGymTask):
    name = "countdown"
    default_options = {"min_numbers": 3, "max_numbers": 3, "min_value": 1, "max_value": 9, "min_target": 1,
                       "max_target": 30, "operators": ("+", "-", "*")}

    def __init__(self, options: dict[str, Any] | None = None, name: str | None = None) -> None:
        options = dict(options or {})
        if isinstance(options.get("operators"), list):  # YAML gives lists; reasoning-gym's config wants a tuple
            options["operators"] = tuple(options["operators"])
        super().__init__(name or "countdown", options)

    def _sample(self, rng: random.Random, ood: bool) -> tuple[str, str, dict[str, Any]]:
        question, _, meta = super()._sample(rng, ood)
        # The task, without reasoning-gym's five format notes (the instruction and SFT data teach the
        # format): some 55 tokens fewer per example.
        question = question.split(_FORMAT_NOTES)[0].strip()
        entry = meta["rg_entry"]
        steps = solve(list(entry["metadata"]["numbers"]), int(entry["metadata"]["target"]), tuple(self.options["operators"]))
        # reasoning-gym's own expression when the step search finds none (it allows negative intermediates)
        answer = expression_of(steps) if steps else str(entry["answer"])
        return question, answer, {**meta, "steps": steps}

    def reference_solution(self, problem: Problem) -> str:
        steps = problem.meta.get("steps")
        if not steps:
            return answer_block(problem.answer)
        return solution_text(steps, problem.answer)

    # ---- verification ---------------------------------------------------------------------------

    def check_lines(self, question: str, solution: str, rationale_format: str = "quoted") -> list[str]:
        parsed = parse_question(question)
        if parsed is None:
            raise ValueError(f"{self.name}: no numbers and target in question {question[:80]!r}")
        numbers, target = parsed
        answer = self.extract_answer(solution)
        body = solution[: answer_start(solution)] if answer is not None else solution
        steps = [(int(a), op, int(b), v) for a, op, b, v in _STEP.findall(body)]
        lines = []
        if not steps:
            lines.append(f"Steps: none. {WRONG}")
        last = None
        for i, (a, op, b, claimed) in enumerate(steps, start=1):
            value = apply(Fraction(a), op, Fraction(b))
            true = "undefined" if value is None else show(value)
            ok = value is not None and claimed == true
            lines.append(f"Step {i}: {a} {op} {b} = {claimed}; {a} {op} {b} is {true}. {CORRECT if ok else WRONG}")
            last = claimed
        if last is not None:
            lines.append(f"Target: the last step gives {last}; the target is {target}. {CORRECT if last == str(target) else WRONG}")
        if answer is None:
            lines.append(f"Answer: none. {WRONG}")
            return lines
        used = [int(x) for x in _INT.findall(answer)]
        same = sorted(used) == sorted(numbers)
        lines.append(f"Numbers: the answer uses {', '.join(map(str, used)) or 'none'}; given {', '.join(map(str, numbers))}; "
                     f"{'each once' if same else 'not the same'}. {CORRECT if same else WRONG}")
        built = expression_of(steps) if steps else None
        shown = answer.replace("\n", " ")[:60]
        ok = built is not None and _norm(built) == _norm(answer)
        lines.append(f"Answer: {shown}; the steps give {built or 'nothing'}. {CORRECT if ok else WRONG}")
        return lines

    # ---- bootstrapping --------------------------------------------------------------------------

    def perturbation_kinds(self) -> tuple[str, ...]:
        return ("fudged_last_step", "number_twice", "number_not_given")

    def perturb(self, problem: Problem, kind: str, rng: random.Random) -> str | None:
        steps = problem.meta.get("steps") or []
        parsed = parse_question(problem.question)
        if not steps or parsed is None:
            return None
        numbers, target = parsed
        a, op, b, _ = steps[0]
        if kind == "fudged_last_step":  # the last step claims the target whatever it computes
            la, lop, lb, _ = steps[-1]
            changed = [*steps[:-1], (rng.choice([x for x in range(max(1, la - 3), la + 4) if x != la]), lop, lb, target)]
        elif kind == "number_twice":  # a given number replaced by another given one
            others = [x for x in numbers if x != a]
            if not others:
                return None
            changed = _rechain(steps, 0, (rng.choice(others), op, b))
        elif kind == "number_not_given":
            changed = _rechain(steps, 0, (a, op, rng.choice([x for x in range(1, 20) if x not in numbers])))
        else:
            raise ValueError(f"{self.name}: unknown perturbation kind {kind!r}")
        if changed is None:
            return None
        return solution_text(changed, expression_of(changed) or "")


def _rechain(steps: list, i: int, operation: tuple) -> list | None:
    """``steps`` with step ``i`` replaced by ``operation`` (its result recomputed) and every later step
    that used a changed result recomputed from the new value; None where a result is not a whole,
    non-negative number (the solutions' own form)."""
    changes: dict[str, str] = {}  # old result -> new result, each used once
    out = []
    for k, (a, op, b, value) in enumerate(steps):
        if k == i:
            a, op, b = operation
        else:
            a, b = changes.pop(str(a), a), changes.pop(str(b), b)
        new = apply(Fraction(a), op, Fraction(b))
        if new is None or new.denominator != 1 or new < 0:
            return None
        new = int(new)
        if str(new) != str(value):
            changes[str(value)] = str(new)
        out.append((int(a), op, int(b), new))
    return out
