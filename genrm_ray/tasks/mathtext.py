"""Numbers and equations in math solution text (shared by the arithmetic and gsm8k tasks).

Values are exact ``Fraction``s, so 0.2 * 50 = 10 checks out and 12 == 12.0 == "12.00".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from genrm_ray.prompts import DIRECT_QUESTION, NO, YES
from genrm_ray.tasks.base import Problem, Task, check_line

# 1,234,567.5 | 1234.5 | 12 | .5 ; thousands separators only in groups of three.
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
NUMBER = re.compile(rf"(?<![\d.,])-?(?:{_NUM})(?![\d])")
UNSIGNED_NUMBER = re.compile(rf"(?<![\d.,])(?:{_NUM})(?![\d])")
_OP = r"[-+*/x×÷]"
_TERM = rf"\(*[ \t]*-?\$?(?:{_NUM})[ \t]*\)*"
# "a op b (op c ...) = r", operands optionally with $ and parentheses; at least one operator.
# The right-hand side must be a plain number: not "1.2Y", not the start of "1/4".
EQUATION = re.compile(
    rf"(?<![\w.,])(?P<lhs>{_TERM}(?:[ \t]*{_OP}[ \t]*{_TERM})+)[ \t]*=[ \t]*\$?(?P<rhs>-?(?:{_NUM}))"
    rf"(?![\w]|[.,]\d|[ \t]*{_OP}[ \t]*[\d(])"
)


_LEADING_EXPRESSION = re.compile(r"^[-\d\s.,+*/x×÷()]+=\s*(.*)$", re.DOTALL)


def to_fraction(text: str) -> Fraction:
    return Fraction(Decimal(text.replace(",", "")))


def format_number(value: Fraction) -> str:
    """12, 12.5, -3; values with no finite decimal form are rounded to 4 places."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def parse_number(value: str) -> str | None:
    """Canonical form of the number an answer announces ("$1,234.50 dollars" -> "1234.5").

    When the answer starts with a calculation ("12 * 2 = 24") the number after its "=" counts.
    The first number of the answer text is taken (units and words after it are ignored).
    """
    value = value.replace("−", "-").replace("$", "").replace("\\", "")
    while m := _LEADING_EXPRESSION.match(value):  # "4 * 4 = 16" -> "16"
        value = m.group(1)
    m = NUMBER.search(value)
    if not m:
        return None
    try:
        return format_number(to_fraction(m.group()))
    except (InvalidOperation, ValueError):
        return None


@dataclass(frozen=True)
class Equation:
    text: str  # as written, e.g. "48/2 = 24" (what a rationale quotes)
    lhs: str  # normalized, e.g. "48 / 2"
    claimed: Fraction  # the right-hand side
    value: Fraction | None  # the left-hand side evaluated; None if it cannot be (e.g. division by 0)

    @property
    def holds(self) -> bool:
        return self.value is not None and self.value == self.claimed


def _tokens(expr: str) -> list[str]:
    expr = expr.replace("$", "").replace(",", "").replace("×", "*").replace("x", "*").replace("÷", "/")
    return re.findall(r"\d*\.\d+|\d+|[-+*/()]", expr)


def evaluate(expr: str) -> Fraction | None:
    """Exact value of an arithmetic expression of numbers, + - * / and parentheses; None if invalid."""
    tokens = _tokens(expr)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom() -> Fraction:
        tok = take() if peek() is not None else None
        if tok == "-":
            return -atom()
        if tok == "(":
            inner = sum_()
            if take() != ")":
                raise ValueError("unbalanced")
            return inner
        if tok is None or tok in "+-*/()":
            raise ValueError("operand expected")
        return Fraction(Decimal(tok))

    def product() -> Fraction:
        value = atom()
        while peek() in ("*", "/"):
            op, right = take(), atom()
            value = value * right if op == "*" else value / right
        return value

    def sum_() -> Fraction:
        value = product()
        while peek() in ("+", "-"):
            op, right = take(), product()
            value = value + right if op == "+" else value - right
        return value

    try:
        value = sum_()
    except (ValueError, ZeroDivisionError, IndexError):
        return None
    return value if pos == len(tokens) else None


def display_expr(expr: str) -> str:
    """An expression with single spaces around operators: "48/2" -> "48 / 2"."""
    out = []
    for tok in _tokens(expr):
        if tok in "+-*/" and out and out[-1].strip() not in ("(", "+", "-", "*", "/"):
            out.append(f" {tok} ")
        else:
            out.append(tok)
    return "".join(out)


def find_equations(text: str) -> list[Equation]:
    """Every checkable "a op b = c" in the text, in order."""
    equations = []
    for m in EQUATION.finditer(text):
        before = text[: m.start("lhs")].rstrip(" \t$")
        if before and (before[-1].isdigit() or before[-1] in "+-*/x×÷"):
            # Only the tail of a longer expression matched ("60 students x 2/3 = 40",
            # "8 x 1 1/2 = 12"): it cannot be checked, so it is not reported as a step.
            continue
        lhs, written = m.group("lhs").strip(), m.group().strip()
        while lhs.startswith("(") and lhs.count("(") > lhs.count(")"):  # "sold (48/2 = 24) clips"
            lhs, written = lhs[1:].lstrip(), written[1:].lstrip()
        equations.append(Equation(written, display_expr(lhs), to_fraction(m.group("rhs")), evaluate(lhs)))
    return equations


# How a rationale writes out a recomputation (data.rationale_format): "quoted" states the result
# ("161 * 23 = 3703"); "decomposed" works it out in place-value parts a small model can do one at a
# time ("161 * 23 = 161 * 20 + 161 * 3 = 3220 + 483 = 3703"). Both quote the solution's claim first.
# "lastdigit" checks each claim by its last digit only (MathTask.last_digit_rationale).
RATIONALE_FORMATS = ("quoted", "decomposed", "lastdigit")
_BINARY = re.compile(r"^(\d+) ([-+*/]) (\d+)$")


def _place_parts(n: int) -> list[int]:
    """161 -> [100, 60, 1]: the non-zero place values of a non-negative integer."""
    digits = str(n)
    return [int(d) * 10 ** (len(digits) - i - 1) for i, d in enumerate(digits) if d != "0"]


def worked(left: Fraction, op: str, right: Fraction, rationale_format: str = "quoted") -> str:
    """``left op right = value``, in ``rationale_format`` (see RATIONALE_FORMATS).

    Decomposed forms, used only for non-negative integers (others stay quoted):
    ``161 + 28 = 161 + 20 + 8 = 181 + 8 = 189``; ``161 - 28 = 161 - 20 - 8 = 141 - 8 = 133``;
    ``161 * 3 = 100 * 3 + 60 * 3 + 1 * 3 = 300 + 180 + 3 = 483`` (a one-digit factor times the other's
    parts), ``161 * 23 = 161 * 20 + 161 * 3 = 3220 + 483 = 3703`` (the shorter factor split);
    ``460 * 7 = 3220, so 3220 / 7 = 460`` (the quotient checked by multiplying back).
    """
    if op == "/" and right == 0:
        return f"{format_number(left)} / 0 cannot be evaluated"
    value = left + right if op == "+" else left - right if op == "-" else left * right if op == "*" else left / right
    head = f"{format_number(left)} {op} {format_number(right)}"
    plain = f"{head} = {format_number(value)}"
    integral = all(x.denominator == 1 and x >= 0 for x in (left, right, value))
    if rationale_format == "quoted" or not integral:
        return plain
    if rationale_format != "decomposed":
        raise ValueError(f"unknown rationale format {rationale_format!r}; known: {', '.join(RATIONALE_FORMATS)}")
    a, b, v = int(left), int(right), int(value)
    if op == "/":  # checked by multiplying back; ends on the value, as every form does
        return f"{v} * {b} = {a}, so {plain}"
    if op in "+-":
        parts = _place_parts(b)
        if len(parts) < 2:
            return plain
        running, steps = a, []
        for part in parts[:-1]:
            running = running + part if op == "+" else running - part
            steps.append(running)
        if any(x < 0 for x in steps):
            return plain
        spelled = f" {op} ".join(str(p) for p in parts)
        return f"{head} = {a} {op} {spelled} = {steps[-1]} {op} {parts[-1]} = {v}"
    # "*": split the other factor when one has a single digit, else the shorter (right on a tie).
    if a < 10 and b < 10:
        return plain
    if b < 10 or (a >= 10 and len(str(a)) < len(str(b))):
        split, keep, split_left = a, b, True
    else:
        split, keep, split_left = b, a, False
    parts = _place_parts(split)
    if len(parts) < 2:
        return plain
    terms = [f"{p} * {keep}" if split_left else f"{keep} * {p}" for p in parts]
    products = [str(p * keep) for p in parts]
    return f"{head} = {' + '.join(terms)} = {' + '.join(products)} = {v}"


def recompute(eq: Equation, rationale_format: str = "quoted") -> str:
    """The solution's left-hand side evaluated, in ``rationale_format`` where it is ``a op b``."""
    if eq.value is None:
        return f"{eq.lhs} cannot be evaluated"
    m = _BINARY.match(eq.lhs)
    if m is None:
        return f"{eq.lhs} = {format_number(eq.value)}"
    return worked(Fraction(int(m.group(1))), m.group(2), Fraction(int(m.group(3))), rationale_format)


def arithmetic_line(label: str, eq: Equation, rationale_format: str = "quoted") -> str:
    """The equation as the solution wrote it, then its left-hand side recomputed; right iff it holds."""
    return check_line(label, eq.text, recompute(eq, rationale_format), eq.holds)


def equation_check_lines(equations: list[Equation], rationale_format: str = "quoted") -> tuple[list[str], int | None]:
    """One line per equation checking its arithmetic only, and the first wrong step (if any).

    Used where no step-level ground truth exists (GSM8K, questions outside the templates).
    """
    lines, first_wrong = [], None
    for i, eq in enumerate(equations, start=1):
        lines.append(arithmetic_line(f"Step {i}", eq, rationale_format))
        if not eq.holds:
            first_wrong = first_wrong or i
    return lines, first_wrong


def last_digit_check(eq: Equation) -> tuple[str, bool] | None:
    """The last-digit check of ``a op b = c`` for whole a, b, c >= 0: (text, passes), None when it
    does not apply (another shape, fractions, negatives). A division is checked by multiplying back.

    ``18 * 19 = 349`` -> ``last digits 8 * 9 = 72, so it ends in 2; 349 ends in 9``, fails.
    """
    m = _BINARY.match(eq.lhs)
    c = eq.claimed
    if m is None or c.denominator != 1 or c < 0:
        return None
    a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(c)
    x, y, z = a % 10, b % 10, c % 10
    if op == "+":
        work, digit, target, whose = f"{x} + {y} = {x + y}", (x + y) % 10, z, c
    elif op == "*":
        work, digit, target, whose = f"{x} * {y} = {x * y}", (x * y) % 10, z, c
    elif op == "-":
        if a < b:
            return None
        work = f"{x} - {y} = {x - y}" if x >= y else f"1{x} - {y} = {10 + x - y}"
        digit, target, whose = (x - y) % 10, z, c
    else:  # c / b = a checked as c * b, which must end like a
        work, digit, target, whose = f"{z} * {y} = {z * y}, times back", (z * y) % 10, x, a
    return f"last digits {work}, so it ends in {digit}; {whose} ends in {target}", digit == target


class MathTask(Task):
    """Numeric answers: canonical numbers, compared exactly (12 == 12.0 == "12.00")."""

    rationale_formats = RATIONALE_FORMATS

    def last_digit_rationale(self, problem: Problem, solution: str) -> str:
        """data.rationale_format=lastdigit: each equation checked by its last digit, a one-digit sum or
        product, then whether the final answer is one of the steps' results. Unlike the other formats it
        names no reference answer, so the verdict ("Yes" when every check passes) is one the verifier
        can reach without solving the problem. It misses slips that keep the last digit (most carry
        errors in sums) and wrong setups whose arithmetic holds: those wrong solutions get a "Yes"
        rationale, which training drops (the verdict must match the label). Equations it cannot check
        by digit (fractions, negatives, longer expressions) are recomputed in full.
        """
        equations = find_equations(solution)
        lines, ok = [], True
        for i, eq in enumerate(equations, start=1):
            check = last_digit_check(eq)
            if check is None:
                lines.append(arithmetic_line(f"Step {i}", eq))
                ok = ok and eq.holds
            else:
                text, passes = check
                lines.append(check_line(f"Step {i}", eq.text, text, passes))
                ok = ok and passes
        predicted = self.extract_answer(solution)
        if predicted is None:
            lines.append("Final answer: the solution gives none. Wrong.")
            ok = False
        elif not equations:
            lines.append(f"Final answer: the solution says {predicted} with no step to check. Wrong.")
            ok = False
        else:
            steps = [i for i, eq in enumerate(equations, start=1) if self.answers_equal(predicted, format_number(eq.claimed))]
            if steps:
                lines.append(check_line("Final answer", predicted, f"step {steps[-1]} gives it", True))
            else:
                lines.append(check_line("Final answer", predicted, "no step gives it", False))
                ok = False
        lines.append(DIRECT_QUESTION + (YES if ok else NO))
        return "\n".join(lines)

    def normalize_answer(self, value: str) -> str | None:
        return parse_number(value)

    def answers_equal(self, a: str, b: str) -> bool:
        return to_fraction(a) == to_fraction(b)

    def show_answer(self, answer: str) -> str:
        return answer
