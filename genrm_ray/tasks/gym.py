"""Any reasoning-gym dataset as a genrm-ray task (https://github.com/open-thought/reasoning-gym).

reasoning-gym generates procedural reasoning problems, each with its own checker (``score_answer``).
A ``ReasoningGymTask`` wraps one dataset by name with its generator settings (``options``, the keyword
arguments of the dataset's config class): problems are drawn by a seeded index into the dataset and
assigned to splits by the hash of their question (``Task.generate``), so the splits stay disjoint;
grading is the dataset's own ``score_answer`` on the announced answer, and only full credit (1.0)
counts as correct.

Solutions announce their answer as ``The answer is:`` followed by the answer on the next line(s), so
multi-line answers (a sudoku grid) need no encoding. A dataset without a programmatic rationale
works in direct mode and with teacher synthesis; ``mini_sudoku`` and ``countdown`` add step-checking
rationales (genrm_ray.tasks.sudoku, genrm_ray.tasks.countdown).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from genrm_ray.prompts import ANSWER_PREFIX, DIRECT_QUESTION, NEXT_QUESTION, verdict_text
from genrm_ray.tasks.base import Problem, Task

# The dataset's virtual size: indices are drawn from [0, SIZE), each a distinct seeded item.
_SIZE = 2**31 - 1
# Where a solution announces its answer; the last one counts.
_ANSWER_MARKER = re.compile(rf"{re.escape(ANSWER_PREFIX)}\s*:", re.IGNORECASE)


def dataset_names() -> list[str]:
    """Every dataset reasoning-gym registers."""
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def answer_block(answer: str) -> str:
    """The last lines of every solution of these tasks: ``The answer is:`` and the answer below it."""
    return f"{ANSWER_PREFIX}:\n{answer.strip()}"


def _last_marker(text: str) -> re.Match | None:
    matches = list(_ANSWER_MARKER.finditer(text))
    return matches[-1] if matches else None


def answer_start(text: str) -> int:
    """Where the last ``The answer is:`` starts in ``text`` (the working before it), or -1."""
    marker = _last_marker(text)
    return -1 if marker is None else marker.start()


def make_dataset(name: str, options: Mapping[str, Any], seed: int = 0):
    """The reasoning-gym dataset ``name`` with generator settings ``options``; ValueError names a bad
    dataset name or setting (reasoning-gym's own config class and its ``validate`` decide)."""
    from reasoning_gym.factory import DATASETS, create_dataset

    if name not in DATASETS:
        close = [n for n in DATASETS if name.split("_")[0] in n][:8]
        raise ValueError(f"no reasoning-gym dataset {name!r}" + (f"; similar: {', '.join(close)}" if close else "")
                         + f" ({len(DATASETS)} datasets: genrm_ray.tasks.gym.dataset_names())")
    reserved = {"seed", "size"} & set(options)
    if reserved:
        raise ValueError(f"reasoning-gym dataset {name!r}: {sorted(reserved)} are set by genrm-ray (data.task.seed "
                         "and the splits), not by options")
    _, config_cls = DATASETS[name]
    known = set(getattr(config_cls, "__dataclass_fields__", {})) - {"seed", "size"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"reasoning-gym dataset {name!r} has no setting {', '.join(map(repr, unknown))}; "
                         f"its settings: {', '.join(sorted(known))}")
    try:
        return create_dataset(name, seed=seed, size=_SIZE, **dict(options))
    except (AssertionError, ValueError, TypeError) as e:  # the config's validate() asserts
        raise ValueError(f"reasoning-gym dataset {name!r}: invalid settings {dict(options)}: {e or type(e).__name__}") from None


class ReasoningGymTask(Task):
    """One reasoning-gym dataset; ``options`` are its generator settings."""

    # Settings used when a config gives none (subclasses pick the difficulty they were measured at).
    default_options: Mapping[str, Any] = {}

    def __init__(self, name: str | None = None, options: Mapping[str, Any] | None = None) -> None:
        self.name = name or self.name
        self.options = {**self.default_options, **(options or {})}
        self.dataset = make_dataset(self.name, self.options)

    # ---- problems -------------------------------------------------------------------------------

    def _sample(self, rng: random.Random, ood: bool) -> tuple[str, str, dict[str, Any]]:
        index = rng.randrange(_SIZE)
        entry = self.dataset[index]
        answer = self.normalize_answer(str(entry["answer"]))
        if answer is None:
            raise ValueError(f"reasoning-gym dataset {self.name!r} item {index} has an empty answer")
        return entry["question"].strip(), answer, {"rg_index": index, "rg_entry": entry}

    def entry(self, problem: Problem) -> dict[str, Any]:
        """The dataset item the problem came from (its checker needs it)."""
        entry = problem.meta.get("rg_entry")
        if entry is None:
            raise ValueError(f"{self.name}: problem {problem.id} carries no reasoning-gym item (problems of "
                             "reasoning-gym tasks are generated, not loaded from files)")
        return entry

    def load(self, path):  # noqa: ANN001, ANN201
        raise ValueError(f"task {self.name!r} generates its problems with reasoning-gym; it reads no problems file "
                         "(unset data.task.file)")

    def reference_solution(self, problem: Problem) -> str:
        return answer_block(problem.answer)

    # ---- grading --------------------------------------------------------------------------------

    def normalize_answer(self, value: str) -> str | None:
        lines = [line.rstrip() for line in value.strip().split("\n")]
        text = "\n".join(lines).strip()
        return text or None

    def extract_answer(self, text: str) -> str | None:
        """Everything after the last ``The answer is:`` (up to a next ``Q:`` question), or None."""
        cut = text.find(NEXT_QUESTION)
        if cut >= 0:
            text = text[:cut]
        marker = _last_marker(text)
        return None if marker is None else self.normalize_answer(text[marker.end():])

    def score(self, answer: str | None, problem: Problem) -> float:
        """reasoning-gym's own ``score_answer`` of an answer text."""
        return float(self.dataset.score_answer(answer, self.entry(problem)))

    def is_correct(self, text: str, problem: Problem) -> bool:
        answer = self.extract_answer(text)
        return answer is not None and self.score(answer, problem) >= 1.0

    # ---- verification ---------------------------------------------------------------------------

    def check_lines(self, question: str, solution: str, rationale_format: str = "quoted") -> list[str]:
        """The step-checking lines of the programmatic rationale (no verdict), from the question text and
        the solution alone, so held-out pairs stored as prompts can be diagnosed too; written in
        ``rationale_format``, one of ``rationale_formats``."""
        raise NotImplementedError(f"task {self.name!r} has no programmatic verification rationale")

    def verification_rationale(self, problem: Problem, solution: str, rationale_format: str = "quoted") -> str:
        """Check lines, then the question and a verdict that is the checker's (the lines are written so
        that every one passes exactly when the checker gives full credit; tests hold them to it)."""
        lines = self.check_lines(problem.question, solution, rationale_format)
        return "\n".join([*lines, DIRECT_QUESTION + verdict_text(self.is_correct(solution, problem))])

    # ---- bootstrapping --------------------------------------------------------------------------

    def perturbation_kinds(self) -> tuple[str, ...]:
        return ("other_answer",)

    def perturb(self, problem: Problem, kind: str, rng: random.Random) -> str | None:
        if kind == "other_answer":  # another item's answer: a plausible-looking wrong one
            other = self.normalize_answer(str(self.dataset[rng.randrange(_SIZE)]["answer"]))
            return None if other is None or other == problem.answer else answer_block(other)
        raise ValueError(f"{self.name}: unknown perturbation kind {kind!r}")
