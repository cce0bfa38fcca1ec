"""Problem and Candidate records, the Task base class, split assignment and answer extraction.

A task defines how problems are made (``_sample``), how a final answer is normalized
(``normalize_answer``), and, for generated tasks, how a solution is checked step by step. Everything
shared lives here: seeded generation into hash-assigned splits, JSONL loading with ``file:line``
errors, extraction of the final answer from free-form model output, grading, and the common tail
of every verification rationale.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrm_ray.prompts import DIRECT_QUESTION, NO, QUESTION_PREFIX, YES

SPLITS = ("train", "validation", "test")
OOD = "ood"  # out-of-distribution split, only for tasks that define one (longer lists)

# Cumulative percentage buckets of the question hash: 80% train, 10% validation, 10% test.
_SPLIT_BUCKETS = (("train", 80), ("validation", 90), ("test", 100))
# generate() gives up after this many draws in a row that found nothing new for the split.
_MAX_FRUITLESS_DRAWS = 20_000


def split_of(question: str) -> str:
    """The split a question belongs to, fixed by a hash of its text (independent of any seed)."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big") % 100
    return next(name for name, upper in _SPLIT_BUCKETS if bucket < upper)


def problem_id(task: str, question: str) -> str:
    return hashlib.sha256(f"{task}\n{question}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Problem:
    id: str  # stable id (hash of task + question)
    task: str  # registry name
    question: str
    answer: str  # reference final answer as text, already normalized by the task
    # Task-specific structure (e.g. the word list); empty for loaded files. A plain dict so problems
    # pickle (Ray); left out of the hash so problems can be set members and dict keys.
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Candidate:
    solution: str
    correct: bool  # graded by task.is_correct, never by construction alone
    kind: str  # "reference", "wrong_letter", "skipped_word", "carried_slip", "wrong_final", ...


# Where a final answer is announced. The LAST marker in the text wins, so a solution that revises
# itself ("The answer is 5. ... The answer is 6.") is graded on its final claim.
_MARKER = re.compile(
    r"(?P<is>\b(?:the\s+)?(?:final\s+)?answer\s+is\b\s*:?)"
    r"|(?P<hash>####)"
    r"|(?P<boxed>\\boxed\s*\{)"
    r"|(?P<prefix>^[ \t]*(?:A|Answer)[ \t]*:|\bfinal\s+answer\s*:)",
    re.IGNORECASE | re.MULTILINE,
)
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)")
_STRIP = " \t\"'`*_“”‘’:,;.!?"
# A model that runs on into a new problem ("...\n\nQ: ...") has ended its solution there.
_NEXT_QUESTION = re.compile(r"\n[ \t]*" + re.escape(QUESTION_PREFIX))


def _boxed_content(text: str, start: int) -> str:
    """Content of a \\boxed{...} whose opening brace ends at ``start`` (brace-balanced)."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:].split("\n", 1)[0]  # unclosed: take the rest of the line


def _unwrap(value: str) -> str:
    """Strip LaTeX wrappers, quotes, markdown emphasis and trailing punctuation from an answer."""
    value = re.sub(r"\\boxed\s*\{([^{}]*)\}", r"\1", value)
    value = re.sub(r"\\(?:text|mathrm|textbf)\s*\{([^{}]*)\}", r"\1", value)
    value = value.replace("\\$", "$").replace("\\(", "").replace("\\)", "")
    previous = None
    while value != previous:
        previous = value
        value = value.strip(_STRIP)
    return value


def raw_answer(text: str) -> str | None:
    """The text announced as the final answer by the last answer marker, cleaned; None if none.

    The solution ends at a line starting ``Q:`` (a model running on into another problem).
    Markers: ``The answer is X`` (also "the final answer is", "answer is:"), ``#### X``,
    ``\\boxed{X}`` and a line starting ``A:`` / ``Answer:``. The value is the rest of that line up to
    the end of its first sentence (or the next line when the marker ends its line), with quotes,
    markdown and trailing punctuation removed. Tasks normalize it further.
    """
    next_question = _NEXT_QUESTION.search(text)
    if next_question:
        text = text[: next_question.start()]
    matches = list(_MARKER.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    if last.group("boxed"):
        value = _boxed_content(text, last.end())
    else:
        rest = text[last.end() :]
        line, _, after = rest.partition("\n")
        if not line.strip():  # "The answer is:\n42"
            line = after.lstrip("\n").partition("\n")[0]
        value = _SENTENCE_END.split(line, maxsplit=1)[0]
    value = _unwrap(value)
    return value or None


class Task:
    """One kind of problem: generation into splits, loading, grading and verification."""

    name: str = ""
    has_ood: bool = False  # whether generate() accepts split "ood"

    # ---- problems -------------------------------------------------------------------------------

    def splits(self) -> tuple[str, ...]:
        return SPLITS + ((OOD,) if self.has_ood else ())

    def generate(self, split: str, n: int, seed: int = 0) -> list[Problem]:
        """``n`` distinct problems of ``split``, the same ones for the same seed.

        A problem's split is fixed by a hash of its question (``split_of``), so train, validation
        and test never share a question whatever seeds are used. The "ood" split (where defined) is
        made by a different generator setting (e.g. longer lists) that the other splits never use.
        """
        if split not in self.splits():
            raise ValueError(f"task {self.name!r} has no split {split!r}; its splits are {list(self.splits())}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        rng = random.Random(f"{self.name}/{split}/{seed}")
        found: dict[str, Problem] = {}
        fruitless = 0
        while len(found) < n:
            question, answer, meta = self._sample(rng, ood=split == OOD)
            if question in found or (split != OOD and split_of(question) != split):
                fruitless += 1
                if fruitless >= _MAX_FRUITLESS_DRAWS:
                    raise ValueError(
                        f"task {self.name!r}: asked for {n} {split} problems but found only {len(found)} "
                        f"distinct ones ({_MAX_FRUITLESS_DRAWS} draws in a row gave nothing new); "
                        "the split cannot hold that many"
                    )
                continue
            fruitless = 0
            found[question] = self.make_problem(question, answer, meta)
        return list(found.values())

    def _sample(self, rng: random.Random, ood: bool) -> tuple[str, str, dict[str, Any]]:
        """One random (question, normalized answer, meta); duplicates and other splits are fine."""
        raise NotImplementedError(f"task {self.name!r} has no generator")

    def make_problem(self, question: str, answer: str, meta: Mapping[str, Any] | None = None) -> Problem:
        return Problem(problem_id(self.name, question), self.name, question, answer, dict(meta or {}))

    def load(self, path: str | Path) -> list[Problem]:
        """Problems from a JSONL file of objects with string fields ``question`` and ``answer``.

        Loaded problems have empty meta (GSM8K keeps its worked solution there), so grading works
        from ``answer`` alone. Bad lines raise ValueError naming ``file:line`` and the field.
        """
        path = Path(path)
        problems = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
                for key in ("question", "answer"):
                    if key not in row:
                        raise ValueError(f"{where}: missing field {key!r}")
                    if not isinstance(row[key], str):
                        raise ValueError(f"{where}: field {key!r} must be a string, got {type(row[key]).__name__}")
                    if not row[key].strip():
                        raise ValueError(f"{where}: field {key!r} is empty")
                answer, meta = self.parse_file_answer(row["answer"], where)
                problems.append(self.make_problem(row["question"].strip(), answer, meta))
        if not problems:
            raise ValueError(f"{path}: no problems in file")
        return problems

    def parse_file_answer(self, text: str, where: str) -> tuple[str, dict[str, Any]]:
        """(normalized answer, meta) from a file's ``answer`` field; ValueError naming ``where``."""
        answer = self.normalize_answer(text)
        if answer is None:
            raise ValueError(f"{where}: field 'answer' is not a valid {self.name} answer: {text[:60]!r}")
        return answer, {}

    def reference_solution(self, problem: Problem) -> str:
        """Step-by-step solution ending with ``prompts.answer_sentence(X)``."""
        raise NotImplementedError

    # ---- grading --------------------------------------------------------------------------------

    def normalize_answer(self, value: str) -> str | None:
        """Canonical form of an announced answer, or None if it is not a valid answer."""
        raise NotImplementedError

    def extract_answer(self, text: str) -> str | None:
        """The final answer of free-form model output, normalized; None if no answer is announced.

        Only an explicit answer marker counts (see ``raw_answer``); there is no fallback to the last
        number or word, so unrelated text is never guessed into an answer.
        """
        value = raw_answer(text)
        return None if value is None else self.normalize_answer(value)

    def answers_equal(self, a: str, b: str) -> bool:
        return a == b

    def is_correct(self, text: str, problem: Problem) -> bool:
        predicted = self.extract_answer(text)
        return predicted is not None and self.answers_equal(predicted, problem.answer)

    # ---- verification ---------------------------------------------------------------------------

    # The formats verification_rationale(..., rationale_format=...) can write (data.rationale_format,
    # checked against this before a job starts); math tasks and mini_sudoku add more.
    rationale_formats: tuple[str, ...] = ("quoted",)

    def verification_rationale(self, problem: Problem, solution: str, rationale_format: str = "quoted") -> str:
        """A step-by-step check of ``solution`` ending ``DIRECT_QUESTION + YES/NO``, in ``rationale_format``.

        Each step line quotes the solution's claim (``check_line``) or says it skipped the step
        (``skip_line``). The verdict always equals ``is_correct(solution, problem)``.
        """
        raise NotImplementedError(f"task {self.name!r} has no programmatic verification rationale")

    def show_answer(self, answer: str) -> str:
        return f'"{answer}"'

    def finish_rationale(self, problem: Problem, solution: str, step_lines: list[str], first_wrong: int | None) -> str:
        """Append the final-answer check, the first wrong step (if any) and the verdict."""
        correct = self.is_correct(solution, problem)
        predicted = self.extract_answer(solution)
        truth = f"the correct answer is {self.show_answer(problem.answer)}"
        if predicted is None:
            final = skip_line("Final answer", "it", truth)
        else:
            shown = predicted if correct or len(predicted) <= 40 else predicted[:40] + "..."
            final = check_line("Final answer", self.show_answer(shown), truth, correct)
        lines = list(step_lines)
        if first_wrong is not None:
            lines.append(f"The first wrong step is step {first_wrong}.")
        lines.append(final)
        lines.append(DIRECT_QUESTION + (YES if correct else NO))
        return "\n".join(lines)

    # ---- bootstrapping --------------------------------------------------------------------------

    def candidate_solutions(self, problem: Problem, n: int, rng: random.Random) -> list[Candidate]:
        """Up to ``n`` distinct candidates: the reference first, then perturbed ones of random kinds.

        Every ``correct`` flag comes from ``is_correct``; a perturbation may happen to be right.
        Fewer than ``n`` come back only when the problem admits fewer distinct perturbations.
        """
        if n <= 0:
            return []
        texts = {self.reference_solution(problem): "reference"}
        kinds = self.perturbation_kinds()
        # Kinds take turns up to a cap, so kinds with many distinct variants (truncations) do not
        # crowd out the rest; the cap rises only when every kind has reached it.
        counts = dict.fromkeys(kinds, 0)
        cap = max(1, -(-(n - 1) // len(kinds)))
        for _ in range(20 * n):
            if len(texts) >= n:
                break
            open_kinds = [k for k in kinds if counts[k] < cap]
            if not open_kinds:
                cap += 1
                continue
            kind = rng.choice(open_kinds)
            text = self.perturb(problem, kind, rng)
            if text is not None and text not in texts:
                texts[text] = kind
                counts[kind] += 1
        return [Candidate(text, self.is_correct(text, problem), kind) for text, kind in texts.items()]

    def perturbation_kinds(self) -> tuple[str, ...]:
        raise NotImplementedError

    def perturb(self, problem: Problem, kind: str, rng: random.Random) -> str | None:
        """A solution text of the given perturbation kind, or None if it does not apply here."""
        raise NotImplementedError


# ---- rationale lines ------------------------------------------------------------------------------
# Every checked step copies the solution's own claim, then writes the recomputed value, then the
# verdict: the verdict is a comparison of two texts on one line, so a model trained on these
# rationales must read the solution to write it (it cannot re-derive the step from the question alone
# and say "Correct" whatever the solution claimed).

CORRECT, WRONG = "Correct.", "Wrong."


def check_line(label: str, claim: str, recomputed: str, correct: bool) -> str:
    """``{label}: the solution says {claim}; {recomputed}. Correct.`` (or ``Wrong.``)."""
    return f"{label}: the solution says {claim}; {recomputed}. {CORRECT if correct else WRONG}"


def skip_line(label: str, what: str, recomputed: str) -> str:
    """A step the solution left out: ``{label}: the solution skips {what}; {recomputed}. Wrong.``"""
    return f"{label}: the solution skips {what}; {recomputed}. {WRONG}"


def truncate(text: str, rng: random.Random) -> str | None:
    """Cut a solution before its final answer line (as a generation that ran out of tokens)."""
    cut = text.rfind("\n")
    if cut <= 0:
        return None
    return text[: rng.randrange(1, cut + 1)]
