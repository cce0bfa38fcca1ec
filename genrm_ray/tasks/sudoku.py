"""4x4 mini sudoku from reasoning-gym: solving is a search, checking is comparisons of single digits.

The question shows the puzzle under one line of rules; reasoning-gym's longer preamble and format
instructions are left out (the instruction and the SFT data teach the format), which saves about 70
of some 300 tokens per example on a CPU. A solution is the filled grid after ``The answer is:`` (four
rows of four space-separated digits, the dataset's own answer format). The programmatic rationale
checks it without solving anything:

    Row 2: 3 4 1 2; puzzle 3 4 _ 2. Correct.
    Row 3: 4 1 4 2; puzzle 3 1 4 _; column 1 given 3 changed; 4 twice. Wrong.
    Column 3: 4 1 2 3. Correct.
    Box 4: 2 1 3 4. Correct.

A row line copies the row and the puzzle's row (givens kept?), and every line checks that 1-4 each
appear once; a line names what fails (a changed given, a repeated digit) and passes silently.

The ``cells`` rationale format (``data.rationale_format: cells``) names every cell, columns a-d and
rows 1-4, so that a column or box line copies each digit from the row line that holds it by matching
the cell's name (``c1=``), the copy small transformers do well, instead of counting positions:

    Row 3: a3=4 b3=1 c3=4 d3=2; puzzle a3 3 changed b3 1 c3 4 d3 _; 4 twice. Wrong.
    Column c: c1=2 c2=3 c3=4 c4=1. Correct.
    Box 1: a1=2 b1=3 a2=1 b2=4. Correct.

A row line's puzzle part flags a changed given right after it, so that each flag compares one
copied digit with one named cell.

The ``flagged`` format (``data.rationale_format: flagged``) is the cells format with the comparison
written where the digit is: each cell of a row line carries the puzzle's symbol in brackets, without a
cell name before it (in the cells format the model copied the solution's digit after a repeated cell
name), and a changed given is flagged inside them, a comparison of two adjacent tokens:

    Row 3: a3=4 (3 changed) b3=1 (1) c3=4 (4) d3=2 (_); 4 twice. Wrong.

Its column and box lines are the cells format's.

A grid whose rows keep the puzzle's givens and whose rows, columns and boxes each hold 1-4 once is the
puzzle's unique solution, so every line passes exactly when reasoning-gym's checker gives full
credit. Each line copies the solution's digits and compares them; no line needs arithmetic.
"""

from __future__ import annotations

import random
import re
from typing import Any

from genrm_ray.tasks.base import CORRECT, WRONG, Problem, truncate
from genrm_ray.tasks.gym import ReasoningGymTask, answer_block

Grid = list[list[str]]
RULES = "Fill in the blanks (_) of this 4x4 mini sudoku so that every row, column and 2x2 box holds 1-4 once:"
DIGITS = ("1", "2", "3", "4")
LETTERS = ("a", "b", "c", "d")  # column names of the cells format
_PUZZLE = re.compile(r"(?:puzzle|once):\s*\n((?:[ \t]*[1-4_](?:[ \t]+[1-4_]){3}[ \t]*\n?){4})", re.IGNORECASE)


def parse_puzzle(question: str) -> Grid | None:
    """The puzzle's four rows ("_" for a blank) from the question text, or None."""
    m = _PUZZLE.search(question)
    return [line.split() for line in m.group(1).strip().split("\n")] if m else None


def parse_grid(answer: str | None) -> Grid | None:
    """Four rows of four digits 1-4 (the whole answer, nothing else), or None."""
    if answer is None:
        return None
    rows = [line.split() for line in answer.strip().split("\n")]
    if len(rows) != 4 or any(len(r) != 4 or any(c not in DIGITS for c in r) for r in rows):
        return None
    if any(line != " ".join(r) for line, r in zip(answer.strip().split("\n"), rows)):
        return None  # other spacing: reasoning-gym's checker does not give full credit
    return rows


# The (row, column) cells of columns 1-4 and of boxes 1-4 (in reading order, each read row by row).
COLUMN_CELLS = [[(r, c) for r in range(4)] for c in range(4)]
BOX_CELLS = [[(r, c) for r in (br, br + 1) for c in (bc, bc + 1)] for br in (0, 2) for bc in (0, 2)]


def _digits(groups: list[list[tuple[int, int]]], grid: Grid) -> Grid:
    return [[grid[r][c] for r, c in cells] for cells in groups]


def _once(digits: list[str]) -> str | None:
    """None when 1-4 each appear once, else what is wrong (the first repeated digit)."""
    for d in digits:
        if digits.count(d) > 1:
            return f"{d} twice"
    return None


def _line(label: str, digits: list[str], notes: list[str], problems: list[str | None]) -> str:
    """``{label}: {digits}; {notes}. Correct.``, or with each failed check named and ``Wrong.``"""
    found = [p for p in [*problems, _once(digits)] if p]
    return "; ".join([f"{label}: {' '.join(digits)}", *notes, *found]) + f". {WRONG if found else CORRECT}"


def _cells(cells: list[tuple[int, int]], grid: Grid) -> str:
    return " ".join(f"{LETTERS[c]}{r + 1}={grid[r][c]}" for r, c in cells)


def _cell_lines(grid: Grid, puzzle: Grid, flagged: bool = False) -> list[str]:
    """The ``cells`` (or ``flagged``) format's lines (module docstring): rows with the puzzle's givens,
    columns, boxes."""
    lines = []
    for r in range(4):
        changed = [puzzle[r][c] not in ("_", grid[r][c]) for c in range(4)]
        repeated = _once(grid[r])
        if flagged:
            parts = [f"Row {r + 1}: " + " ".join(f"{LETTERS[c]}{r + 1}={grid[r][c]} ({puzzle[r][c]}"
                                                 + (" changed)" if changed[c] else ")") for c in range(4))]
        else:
            given = " ".join(f"{LETTERS[c]}{r + 1} {puzzle[r][c]}" + (" changed" if changed[c] else "") for c in range(4))
            parts = [f"Row {r + 1}: {_cells([(r, c) for c in range(4)], grid)}", f"puzzle {given}"]
        lines.append("; ".join([*parts, *([repeated] if repeated else [])])
                     + f". {WRONG if any(changed) or repeated else CORRECT}")
    groups = [(f"Column {LETTERS[c]}", cells) for c, cells in enumerate(COLUMN_CELLS)]
    groups += [(f"Box {i + 1}", cells) for i, cells in enumerate(BOX_CELLS)]
    for label, cells in groups:
        problem = _once([grid[r][c] for r, c in cells])
        lines.append("; ".join([f"{label}: {_cells(cells, grid)}", *([problem] if problem else [])])
                     + f". {WRONG if problem else CORRECT}")
    return lines


def grid_text(grid: Grid) -> str:
    return "\n".join(" ".join(r) for r in grid)


class MiniSudokuTask(ReasoningGymTask):
    name = "mini_sudoku"
    default_options = {"min_empty": 6, "max_empty": 8}

    def __init__(self, options: dict[str, Any] | None = None, name: str | None = None) -> None:
        super().__init__(name or "mini_sudoku", options)

    def _sample(self, rng: random.Random, ood: bool) -> tuple[str, str, dict[str, Any]]:
        question, answer, meta = super()._sample(rng, ood)
        puzzle = parse_puzzle(question)
        if puzzle is None:
            raise ValueError(f"{self.name}: reasoning-gym's question has no 4x4 puzzle: {question[:120]!r}")
        return f"{RULES}\n{grid_text(puzzle)}", answer, meta

    # ---- verification ---------------------------------------------------------------------------

    rationale_formats = ("quoted", "cells", "flagged")

    def check_lines(self, question: str, solution: str, rationale_format: str = "quoted") -> list[str]:
        if rationale_format not in self.rationale_formats:
            raise ValueError(f"{self.name}: unknown rationale format {rationale_format!r}; known: "
                             f"{', '.join(self.rationale_formats)}")
        puzzle = parse_puzzle(question)
        if puzzle is None:
            raise ValueError(f"{self.name}: no 4x4 puzzle in question {question[:80]!r}")
        answer = self.extract_answer(solution)
        grid = parse_grid(answer)
        if grid is None:
            what = "no answer" if answer is None else "not four rows of four digits 1-4"
            return [f"Grid: {what}. {WRONG}"]
        if rationale_format in ("cells", "flagged"):
            return _cell_lines(grid, puzzle, flagged=rationale_format == "flagged")
        lines = []
        for i, (row, given) in enumerate(zip(grid, puzzle), start=1):
            changed = [c for c in range(4) if given[c] != "_" and given[c] != row[c]]
            notes = [f"puzzle {' '.join(given)}"]
            problem = f"column {changed[0] + 1} given {given[changed[0]]} changed" if changed else None
            lines.append(_line(f"Row {i}", row, notes, [problem]))
        for label, groups in (("Column", _digits(COLUMN_CELLS, grid)), ("Box", _digits(BOX_CELLS, grid))):
            for i, digits in enumerate(groups, start=1):
                lines.append(_line(f"{label} {i}", digits, [], []))
        return lines

    # ---- bootstrapping --------------------------------------------------------------------------

    def perturbation_kinds(self) -> tuple[str, ...]:
        return ("swapped_digits", "given_changed", "repeated_digit", "truncated")

    def perturb(self, problem: Problem, kind: str, rng: random.Random) -> str | None:
        solution = [row[:] for row in parse_grid(problem.answer) or []]
        puzzle = parse_puzzle(problem.question)
        if not solution or puzzle is None:
            return None
        blanks = [(r, c) for r in range(4) for c in range(4) if puzzle[r][c] == "_"]
        givens = [(r, c) for r in range(4) for c in range(4) if puzzle[r][c] != "_"]
        grid = [row[:] for row in solution]
        if kind == "swapped_digits":  # two blanks of one row filled the other way round
            rows = [r for r in range(4) if sum(1 for (rr, _) in blanks if rr == r) >= 2]
            if not rows:
                return None
            r = rng.choice(rows)
            a, b = rng.sample([c for (rr, c) in blanks if rr == r], 2)
            grid[r][a], grid[r][b] = grid[r][b], grid[r][a]
        elif kind == "given_changed":
            r, c = rng.choice(givens)
            grid[r][c] = rng.choice([d for d in DIGITS if d != grid[r][c]])
        elif kind == "repeated_digit":  # a blank filled with a digit its row already holds
            r, c = rng.choice(blanks)
            grid[r][c] = rng.choice([d for d in grid[r] if d != grid[r][c]])
        elif kind == "truncated":
            return truncate(answer_block(grid_text(grid)), rng)
        else:
            raise ValueError(f"{self.name}: unknown perturbation kind {kind!r}")
        return None if grid == solution else answer_block(grid_text(grid))
