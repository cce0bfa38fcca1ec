"""GSM8K (Cobbe et al., 2021): real grade-school math problems, loaded from JSONL only.

Each row has ``question`` and ``answer``; the answer is a worked solution with calculator
annotations (``<<48/2=24>>``) whose last line is ``#### N``. The worked text (annotations stripped)
is kept in ``meta["solution"]`` for the reference solution; grading uses ``answer`` (N) alone.
Grading policy: numeric equality (12 == 12.0 == "12.00").
"""

from __future__ import annotations

import random
import re
from fractions import Fraction
from typing import Any

from genrm_ray.prompts import answer_sentence
from genrm_ray.tasks.base import Problem, truncate
from genrm_ray.tasks.mathtext import (
    EQUATION,
    UNSIGNED_NUMBER,
    MathTask,
    equation_check_lines,
    evaluate,
    find_equations,
    format_number,
    parse_number,
    to_fraction,
)

_ANNOTATION = re.compile(r"<<[^<>]*>>")
_FINAL = re.compile(r"^####\s*(.+?)\s*$")
_SLIPS = (-10, -2, -1, 1, 2, 10)


class GSM8KTask(MathTask):
    name = "gsm8k"

    def generate(self, split: str, n: int, seed: int = 0) -> list[Problem]:
        raise NotImplementedError(
            "gsm8k has no generator: load real GSM8K JSONL with get_task('gsm8k').load(path) "
            "(or use the 'arithmetic' task for generated GSM8K-style problems)"
        )

    def parse_file_answer(self, text: str, where: str) -> tuple[str, dict[str, Any]]:
        lines = text.strip().split("\n")
        m = _FINAL.match(lines[-1].strip())
        number = parse_number(m.group(1)) if m else None
        if number is None:
            raise ValueError(
                f"{where}: field 'answer' must end with a line '#### <number>', got {lines[-1][:60]!r}"
            )
        body = "\n".join(line.rstrip() for line in _ANNOTATION.sub("", "\n".join(lines[:-1])).split("\n"))
        return number, {"solution": body.strip()}

    def reference_solution(self, problem: Problem) -> str:
        """GSM8K's worked solution without annotations, ending with ``answer_sentence(N)``."""
        body = problem.meta.get("solution")
        if body is None:
            raise ValueError(
                f"gsm8k problem {problem.id} has no worked solution in meta['solution'] (load it from JSONL)"
            )
        return _with_answer(body, problem.answer)

    def verification_rationale(self, problem: Problem, solution: str, rationale_format: str = "quoted") -> str:
        """GSM8K has no step-level ground truth: each equation's arithmetic is checked, then the
        final answer against the reference ("lastdigit": MathTask.last_digit_rationale)."""
        if rationale_format == "lastdigit":
            return self.last_digit_rationale(problem, solution)
        lines, first_wrong = equation_check_lines(find_equations(solution), rationale_format)
        return self.finish_rationale(problem, solution, lines, first_wrong)

    # ---- bootstrapping --------------------------------------------------------------------------

    def perturbation_kinds(self) -> tuple[str, ...]:
        return ("carried_slip", "skipped_step", "wrong_final", "truncated")

    def perturb(self, problem: Problem, kind: str, rng: random.Random) -> str | None:
        self.reference_solution(problem)  # fails clearly without a worked solution
        body = problem.meta["solution"]
        answer = to_fraction(problem.answer)
        if kind == "carried_slip":
            holding = [i for i, eq in enumerate(find_equations(body)) if eq.holds]
            if not holding:
                return None
            k = rng.choice(holding)
            for delta in rng.sample(_SLIPS, len(_SLIPS)):
                slipped = _carry_slip(body, k, delta)
                if slipped is not None:
                    text, changed = slipped
                    return _with_answer(text, format_number(changed.get(answer, answer)))
            return None
        if kind == "skipped_step":  # drop the last line, answer with the last result left
            head = body.rsplit("\n", 1)[0] if "\n" in body else ""
            equations = find_equations(head)
            if not equations:
                return None
            return _with_answer(head, format_number(equations[-1].claimed))
        if kind == "wrong_final":
            return _with_answer(body, format_number(answer + rng.choice(_SLIPS)))
        if kind == "truncated":
            return truncate(self.reference_solution(problem), rng)
        raise ValueError(f"{self.name}: unknown perturbation kind {kind!r}")


def _with_answer(body: str, answer: str) -> str:
    """Worked lines (possibly none), then the answer sentence."""
    return f"{body}\n{answer_sentence(answer)}" if body else answer_sentence(answer)


def _carry_slip(body: str, k: int, delta: int) -> tuple[str, dict[Fraction, Fraction]] | None:
    """Add ``delta`` to the result of equation ``k`` and recompute every later equation that uses a
    changed value. Returns (text, old value -> new value), or None if a value stops being a number
    with at most 2 decimals (the slip would then look like a rounding error)."""
    changed: dict[Fraction, Fraction] = {}
    out, last = [], 0
    for i, m in enumerate(EQUATION.finditer(body)):
        if i < k:
            continue
        lhs, rhs = m.group("lhs"), to_fraction(m.group("rhs"))
        if i == k:
            if evaluate(lhs) != rhs:
                return None
            new = rhs + delta
        else:
            if evaluate(lhs) != rhs:  # leave equations the reference got wrong as they are
                continue
            carried = UNSIGNED_NUMBER.sub(lambda n: _replace(n.group(), changed), lhs)
            if carried == lhs:  # uses no changed value: keep the text as it is
                continue
            lhs, new = carried, evaluate(carried)
            if new is None:
                return None
        if (new * 100).denominator != 1:
            return None
        if new != rhs:
            changed[rhs] = new
        out.append(body[last : m.start("lhs")] + lhs + body[m.end("lhs") : m.start("rhs")] + format_number(new))
        last = m.end("rhs")
    out.append(body[last:])
    return "".join(out), changed


def _replace(number: str, changed: dict[Fraction, Fraction]) -> str:
    value = to_fraction(number)
    return format_number(changed[value]) if value in changed else number
