"""Word sorting (BIG-Bench style): sort a list of made-up words alphabetically.

The solution names the words in order, one step per position. In distribution: lists of 3-5 words;
out of distribution ("ood"): lists of 7. Grading policy: case-insensitive; words separated by
whitespace and/or commas; the answer is the words in order joined by single spaces.
"""

from __future__ import annotations

import random
import re
from typing import Any

from genrm_ray.prompts import answer_sentence
from genrm_ray.tasks.base import Problem, Task, check_line, skip_line, truncate
from genrm_ray.tasks.words import other_letter, parse_quoted_words, random_words

IN_DISTRIBUTION_LENGTHS = (3, 4, 5)
OOD_LENGTH = 7

_STEP = re.compile(r"word\s+(\d+)\s+in\s+alphabetical\s+order\s+is\s+[\"'“]?([a-z]+)", re.IGNORECASE)


def _solution(order: list[str], final: list[str]) -> str:
    lines = [f'Word {i} in alphabetical order is "{w}".' for i, w in enumerate(order, start=1)]
    lines.append(answer_sentence(" ".join(final)))
    return "\n".join(lines)


def _position(number: int | str, word: str) -> str:
    """A step's claim in the rationale: the solution's position number and word."""
    return f'word {str(number)[:20]} is "{word[:20]}"'


class WordSortTask(Task):
    name = "word_sort"
    has_ood = True

    def question(self, words: list[str]) -> str:
        return f'Sort the words in "{" ".join(words)}" alphabetically.'

    def _sample(self, rng: random.Random, ood: bool) -> tuple[str, str, dict[str, Any]]:
        words = random_words(rng, OOD_LENGTH if ood else rng.choice(IN_DISTRIBUTION_LENGTHS))
        return self.question(words), " ".join(sorted(words)), {"words": words}

    def words(self, problem: Problem) -> list[str]:
        """The word list, recovered from the question so loaded problems work too."""
        words = parse_quoted_words(problem.question)
        if words is None:
            raise ValueError(f"{self.name}: no quoted word list in question {problem.question[:80]!r}")
        return words

    def reference_solution(self, problem: Problem) -> str:
        ordered = sorted(self.words(problem))
        return _solution(ordered, ordered)

    def normalize_answer(self, value: str) -> str | None:
        words = value.replace(",", " ").lower().split()
        if not words or not all(w.isascii() and w.isalpha() for w in words):
            return None
        return " ".join(words)

    # ---- verification ---------------------------------------------------------------------------

    def verification_rationale(self, problem: Problem, solution: str, rationale_format: str = "quoted") -> str:
        words = parse_quoted_words(problem.question)
        if words is None:  # a loaded question in another wording: only the answer can be checked
            return self.finish_rationale(problem, solution, [], None)
        truth = sorted(words)
        # (number as the solution wrote it, word); steps are checked by their position in the text.
        claims = [(n, w.lower()) for n, w in _STEP.findall(solution)]
        lines, first_wrong = [], None
        for i, word in enumerate(truth, start=1):
            recomputed = _position(i, word)
            if i > len(claims):
                lines.append(skip_line(f"Step {i}", f"word {i}", recomputed))
                right = False
            else:
                right = claims[i - 1][1] == word
                lines.append(check_line(f"Step {i}", _position(*claims[i - 1]), recomputed, right))
            if not right:
                first_wrong = first_wrong or i
        for claim in claims[len(truth) :]:
            lines.append(check_line("Extra step", _position(*claim), f"the list has {len(truth)} words", False))
        return self.finish_rationale(problem, solution, lines, first_wrong)

    # ---- bootstrapping --------------------------------------------------------------------------

    def perturbation_kinds(self) -> tuple[str, ...]:
        return ("wrong_order", "skipped_word", "wrong_letter", "unsorted", "wrong_final", "truncated")

    def perturb(self, problem: Problem, kind: str, rng: random.Random) -> str | None:
        words = self.words(problem)
        ordered = sorted(words)
        i = rng.randrange(len(ordered) - 1) if len(ordered) > 1 else 0
        if kind == "wrong_order":  # two neighbours swapped, carried into the answer
            swapped = ordered[:]
            swapped[i : i + 2] = swapped[i : i + 2][::-1]
            return _solution(swapped, swapped)
        if kind == "skipped_word":
            kept = ordered[:i] + ordered[i + 1 :]
            return _solution(kept, kept)
        if kind == "wrong_letter":  # a word copied with a typo
            typo = ordered[:]
            word = typo[i]
            k = rng.randrange(len(word))
            typo[i] = word[:k] + other_letter(rng, word[k]) + word[k + 1 :]
            return _solution(typo, typo)
        if kind == "unsorted":  # the list as given, or shuffled, presented as sorted
            shuffled = words[:]
            if rng.random() < 0.5:
                rng.shuffle(shuffled)
            return _solution(shuffled, shuffled)
        if kind == "wrong_final":  # right steps, then a different order in the answer
            final = ordered[:]
            while len(final) > 1 and final == ordered:
                rng.shuffle(final)
            return _solution(ordered, final)
        if kind == "truncated":
            return truncate(self.reference_solution(problem), rng)
        raise ValueError(f"{self.name}: unknown perturbation kind {kind!r}")
