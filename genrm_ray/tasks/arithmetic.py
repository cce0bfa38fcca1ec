"""Multi-step arithmetic word problems in GSM8K's style and answer format (2-5 steps).

Each template is a question with number slots and a chain of binary steps over the slots and
earlier results ("s1", "s2", ...). Values are drawn until every step gives a positive integer. The
question alone determines the template and the numbers (it is parsed back with a regex built from
the template), so loaded problems get reference solutions and step-level verification too.
Grading policy: numeric equality (12 == 12.0 == "12.00").
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from genrm_ray.prompts import answer_sentence
from genrm_ray.tasks.base import Problem, check_line, skip_line, truncate
from genrm_ray.tasks.mathtext import (
    MathTask,
    arithmetic_line,
    equation_check_lines,
    find_equations,
    format_number,
    worked,
)

NAMES = ("Mary", "James", "Aisha", "Carlos", "Mei", "Omar", "Lena", "Tom", "Priya", "Jack",
         "Sofia", "Noah", "Yuki", "Ben", "Fatima", "Leo", "Nina", "Sam", "Ivy", "Raj")  # fmt: skip
_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}
# A slip of the wrong operation keeps results integral: * and / become +, + and - become *.
_WRONG_OP = {"*": "+", "/": "+", "+": "*", "-": "*"}
_SLIPS = (-10, -2, -1, 1, 2, 10)


@dataclass(frozen=True)
class Template:
    key: str
    question: str  # format string with {name} and integer slots
    ranges: dict[str, tuple[int, int]]  # inclusive range of each integer slot
    steps: tuple[tuple[str, str], ...]  # ("s1 * c", "{name} pays {eq} dollars.")

    def pattern(self) -> re.Pattern[str]:
        """A regex matching exactly the questions of this template, capturing the slots."""
        parts, seen = [], set()
        for literal, slot, _, _ in string.Formatter().parse(self.question):
            parts.append(re.escape(literal))
            if slot is None:
                continue
            if slot in seen:
                parts.append(f"(?P={slot})")
            else:
                seen.add(slot)
                parts.append(f"(?P<{slot}>[A-Z][a-z]+)" if slot == "name" else f"(?P<{slot}>\\d+)")
        return re.compile("".join(parts))


TEMPLATES = (
    Template(
        "classes",
        "{name} has {a} classes a week for {b} weeks. Each class costs ${c}. "
        "How much does {name} pay for the classes in total?",
        {"a": (2, 6), "b": (2, 12), "c": (5, 30)},
        (("a * b", "{name} has {eq} classes in total."), ("s1 * c", "{name} pays {eq} dollars.")),
    ),
    Template(
        "pencils",
        "{name} buys {a} packs of pencils with {b} pencils in each pack and gives {c} pencils to friends. "
        "How many pencils does {name} have left?",
        {"a": (2, 9), "b": (4, 12), "c": (1, 30)},
        (("a * b", "{name} buys {eq} pencils."), ("s1 - c", "{name} has {eq} pencils left.")),
    ),
    Template(
        "pizza",
        "{name} orders {a} pizzas cut into {b} slices each. {c} friends share the slices equally. "
        "How many slices does each friend get?",
        {"a": (2, 8), "b": (6, 12), "c": (2, 10)},
        (("a * b", "There are {eq} slices."), ("s1 / c", "Each friend gets {eq} slices.")),
    ),
    Template(
        "books",
        "{name} has ${a}. {name} buys {b} books that cost ${c} each. How much money does {name} have left?",
        {"a": (20, 200), "b": (2, 6), "c": (3, 15)},
        (("b * c", "The books cost {eq} dollars."), ("a - s1", "{name} has {eq} dollars left.")),
    ),
    Template(
        "bakery",
        "A baker makes {a} trays of muffins with {b} muffins on each tray. The baker sells {c} muffins in the "
        "morning and {d} muffins in the afternoon. How many muffins are left?",
        {"a": (2, 9), "b": (6, 12), "c": (1, 30), "d": (1, 30)},
        (
            ("a * b", "The baker makes {eq} muffins."),
            ("c + d", "The baker sells {eq} muffins."),
            ("s1 - s2", "There are {eq} muffins left."),
        ),
    ),
    Template(
        "marbles",
        "A jar has {a} red marbles and {b} blue marbles. {name} adds {c} bags with {d} green marbles in each "
        "bag. How many marbles are in the jar now?",
        {"a": (5, 40), "b": (5, 40), "c": (2, 6), "d": (3, 12)},
        (
            ("a + b", "The jar has {eq} red and blue marbles."),
            ("c * d", "{name} adds {eq} green marbles."),
            ("s1 + s2", "The jar has {eq} marbles now."),
        ),
    ),
    Template(
        "wages",
        "{name} earns ${a} an hour and works {b} hours a day for {c} days. Then {name} pays ${d} for rent. "
        "How much money does {name} have left?",
        {"a": (8, 25), "b": (2, 8), "c": (2, 6), "d": (20, 200)},
        (
            ("a * b", "{name} earns {eq} dollars a day."),
            ("s1 * c", "{name} earns {eq} dollars in total."),
            ("s2 - d", "{name} has {eq} dollars left."),
        ),
    ),
    Template(
        "notebooks",
        "A school has {a} classes with {b} students in each class. Each student needs {c} notebooks, and "
        "notebooks come in boxes of {d}. How many boxes of notebooks does the school need?",
        {"a": (2, 8), "b": (10, 30), "c": (2, 5), "d": (2, 10)},
        (
            ("a * b", "The school has {eq} students."),
            ("s1 * c", "The students need {eq} notebooks."),
            ("s2 / d", "The school needs {eq} boxes."),
        ),
    ),
    Template(
        "reading",
        "{name} reads {a} pages on Monday and {b} times as many pages on Tuesday. On Wednesday, {name} reads "
        "{c} fewer pages than on Tuesday. How many pages does {name} read in the three days?",
        {"a": (3, 15), "b": (2, 4), "c": (1, 10)},
        (
            ("a * b", "On Tuesday {name} reads {eq} pages."),
            ("s1 - c", "On Wednesday {name} reads {eq} pages."),
            ("a + s1", "On Monday and Tuesday {name} reads {eq} pages."),
            ("s3 + s2", "In the three days {name} reads {eq} pages."),
        ),
    ),
    Template(
        "running",
        "{name} runs {a} kilometers on each of the 5 weekdays and {b} kilometers on each of the 2 weekend "
        "days. How many kilometers does {name} run in {c} weeks?",
        {"a": (2, 10), "b": (3, 15), "c": (2, 8)},
        (
            ("a * 5", "On weekdays {name} runs {eq} kilometers."),
            ("b * 2", "On the weekend {name} runs {eq} kilometers."),
            ("s1 + s2", "{name} runs {eq} kilometers a week."),
            ("s3 * c", "In {c} weeks {name} runs {eq} kilometers."),
        ),
    ),
    Template(
        "orchard",
        "A farmer has {a} rows of apple trees with {b} trees in each row. Each tree gives {c} apples. The "
        "farmer packs the apples in bags of {d} and sells each bag for ${e}. The farmer spends ${f} on the "
        "bags. How much money does the farmer make?",
        {"a": (2, 6), "b": (3, 10), "c": (4, 20), "d": (2, 10), "e": (2, 9), "f": (5, 50)},
        (
            ("a * b", "The farmer has {eq} trees."),
            ("s1 * c", "The trees give {eq} apples."),
            ("s2 / d", "The farmer packs {eq} bags."),
            ("s3 * e", "The bags sell for {eq} dollars."),
            ("s4 - f", "The farmer makes {eq} dollars."),
        ),
    ),
)
_PATTERNS = [(t, t.pattern()) for t in TEMPLATES]


@dataclass(frozen=True)
class Step:
    sentence: str  # with the equation filled in
    left: Fraction
    op: str
    right: Fraction
    result: Fraction  # as written (differs from left op right after a slip)

    @property
    def equation(self) -> str:
        return _equation(self.left, self.op, self.right, self.result)

    def recomputed(self, rationale_format: str) -> str:
        """The step worked out again in ``rationale_format`` (its true value, whatever was written)."""
        return worked(self.left, self.op, self.right, rationale_format)


def _equation(left: Fraction, op: str, right: Fraction, result: Fraction) -> str:
    return f"{format_number(left)} {op} {format_number(right)} = {format_number(result)}"


def _solve(
    template: Template,
    values: dict[str, Any],
    slip: tuple[int, int] | None = None,
    wrong_op: int | None = None,
    commute: bool = False,
) -> list[Step]:
    """The template's steps on ``values``; ``slip`` = (step, delta) adds delta to one result and
    ``wrong_op`` = step swaps one operation, each carried forward into the later steps;
    ``commute`` writes every + and * with its operands swapped (a different, still right text)."""
    env: dict[str, Fraction] = {k: Fraction(v) for k, v in values.items() if k != "name"}
    steps = []
    for i, (expr, sentence) in enumerate(template.steps):
        a, op, b = expr.split()
        left = env[a] if a in env else Fraction(int(a))
        right = env[b] if b in env else Fraction(int(b))
        if wrong_op == i:
            op = _WRONG_OP[op]
        result = _APPLY[op](left, right)
        if commute and op in "+*":
            left, right = right, left
        if slip is not None and slip[0] == i:
            result += slip[1]
        env[f"s{i + 1}"] = result
        eq = _equation(left, op, right, result)
        steps.append(Step(sentence.format(eq=eq, **values), left, op, right, result))
    return steps


def _text(steps: list[Step], final: str) -> str:
    return "\n".join([s.sentence for s in steps] + [answer_sentence(final)])


def _integral(steps: list[Step]) -> bool:
    return all(s.result.denominator == 1 for s in steps)


class ArithmeticTask(MathTask):
    name = "arithmetic"

    def _sample(self, rng: random.Random, ood: bool) -> tuple[str, str, dict[str, Any]]:
        for _ in range(1000):
            template = rng.choice(TEMPLATES)
            values: dict[str, Any] = {k: rng.randint(lo, hi) for k, (lo, hi) in template.ranges.items()}
            values["name"] = rng.choice(NAMES)
            steps = _solve(template, values)
            if all(s.result.denominator == 1 and s.result > 0 for s in steps):
                question = template.question.format(**values)
                return question, format_number(steps[-1].result), {"template": template.key, "values": values}
        raise RuntimeError("arithmetic: no valid values found in 1000 draws; check the template ranges")

    def parse(self, question: str) -> tuple[Template, dict[str, Any]] | None:
        """The template and slot values of a question, or None if no template matches it."""
        for template, pattern in _PATTERNS:
            m = pattern.fullmatch(question.strip())
            if m:
                values = {k: (v if k == "name" else int(v)) for k, v in m.groupdict().items()}
                return template, values
        return None

    def _steps(self, problem: Problem, **perturbation: Any) -> list[Step]:
        parsed = self.parse(problem.question)
        if parsed is None:
            raise ValueError(f"{self.name}: question matches no template: {problem.question[:80]!r}")
        return _solve(*parsed, **perturbation)

    def reference_solution(self, problem: Problem) -> str:
        steps = self._steps(problem)
        return _text(steps, format_number(steps[-1].result))

    # ---- verification ---------------------------------------------------------------------------

    def verification_rationale(self, problem: Problem, solution: str, rationale_format: str = "quoted") -> str:
        """Checks the i-th equation of the solution against the i-th reference step.

        A step is correct when its arithmetic holds and its result is that step's value (or another
        step's value, so reordered steps pass). Each line quotes the solution's equation, then the
        recomputed one: the reference step with that value when the arithmetic holds (so a carried
        slip shows the operand that is off), else the solution's own left-hand side evaluated.
        Questions outside the templates get arithmetic-only checks of each equation.
        ``rationale_format`` is how each recomputation is written (mathtext.RATIONALE_FORMATS); "lastdigit"
        checks last digits only, with no reference (MathTask.last_digit_rationale).
        """
        if rationale_format == "lastdigit":
            return self.last_digit_rationale(problem, solution)
        equations = find_equations(solution)
        if self.parse(problem.question) is None:
            lines, first_wrong = equation_check_lines(equations, rationale_format)
            return self.finish_rationale(problem, solution, lines, first_wrong)
        expected = self._steps(problem)
        lines, first_wrong = [], None
        for i in range(1, max(len(equations), len(expected)) + 1):
            eq = equations[i - 1] if i <= len(equations) else None
            want = expected[i - 1] if i <= len(expected) else None
            if eq is None:
                assert want is not None
                lines.append(skip_line(f"Step {i}", "this step", want.recomputed(rationale_format)))
                right = False
            elif want is None:  # more equations than the template has steps: only the arithmetic counts
                lines.append(arithmetic_line(f"Step {i} (extra)", eq, rationale_format))
                right = eq.holds
            elif not eq.holds:
                lines.append(arithmetic_line(f"Step {i}", eq, rationale_format))
                right = False
            else:
                # This step's reference if the value is its own, else the step it belongs to (reordered).
                same = [s for s in [want, *expected] if s.result == eq.claimed]
                right = bool(same)
                shown = (same[0] if same else want).recomputed(rationale_format)
                lines.append(check_line(f"Step {i}", eq.text, shown, right))
            if not right:
                first_wrong = first_wrong or i
        return self.finish_rationale(problem, solution, lines, first_wrong)

    # ---- bootstrapping --------------------------------------------------------------------------

    def perturbation_kinds(self) -> tuple[str, ...]:
        return ("carried_slip", "wrong_operation", "skipped_step", "wrong_final", "truncated", "commuted")

    def perturb(self, problem: Problem, kind: str, rng: random.Random) -> str | None:
        reference = self._steps(problem)
        k = rng.randrange(len(reference))
        if kind == "carried_slip":  # one result off, the rest computed from it
            for delta in rng.sample(_SLIPS, len(_SLIPS)):
                steps = self._steps(problem, slip=(k, delta))
                if _integral(steps):
                    return _text(steps, format_number(steps[-1].result))
            return None
        if kind == "wrong_operation":
            steps = self._steps(problem, wrong_op=k)
            # A later division may stop dividing evenly; its text would then claim a rounded value
            # (46 / 6 = 7.6667) that reads as an arithmetic slip rather than the wrong operation.
            return _text(steps, format_number(steps[-1].result)) if _integral(steps) else None
        if kind == "skipped_step":  # stops one step early and reports that result
            if len(reference) < 2:
                return None
            return _text(reference[:-1], format_number(reference[-2].result))
        if kind == "wrong_final":  # right steps, different final number
            return _text(reference, format_number(reference[-1].result + rng.choice(_SLIPS)))
        if kind == "truncated":
            return truncate(self.reference_solution(problem), rng)
        if kind == "commuted":  # a right solution worded differently: "7 * 5" for "5 * 7"
            steps = self._steps(problem, commute=True)
            return _text(steps, format_number(steps[-1].result))
        raise ValueError(f"{self.name}: unknown perturbation kind {kind!r}")
