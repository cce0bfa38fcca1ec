"""Last-letter concatenation (Wei et al., 2022; the GenRM paper's algorithmic task).

In distribution: lists of 2-4 words; out of distribution ("ood"): lists of 6, as in the paper.
Grading policy: case-insensitive, whitespace inside the answer ignored, letters only.
"""

from __future__ import annotations

import random
import re
from typing import Any

from genrm_ray.prompts import answer_sentence
from genrm_ray.tasks.base import Problem, Task, check_line, skip_line, truncate
from genrm_ray.tasks.words import other_letter, parse_quoted_words, random_words

IN_DISTRIBUTION_LENGTHS = (2, 3, 4)
OOD_LENGTH = 6

_STEP = re.compile(r"last\s+letter\s+of\s+[\"'“]?([a-z]+)[\"'”]?\s+is\s+[\"'“]?([a-z])\b", re.IGNORECASE)
_CONCAT = re.compile(r"concatenat\w*\b[^\n]*?\bgives?\s+[\"'“]?([a-z]+)", re.IGNORECASE)


def _quote_list(letters: list[str]) -> str:
    quoted = [f'"{c}"' for c in letters]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _letter_claim(word: str, letter: str) -> str:
    """One step's claim, as the solution states it and the rationale quotes and recomputes it."""
    return f'the last letter of "{word}" is "{letter}"'


def _sentence(clause: str) -> str:
    return clause[:1].upper() + clause[1:] + "."


def _solution(words: list[str], letters: list[str], final: str, order: list[str] | None = None) -> str:
    """Solution text: one step per (word, claimed letter), the concatenation (of ``order``, by
    default the letters as claimed), and the final answer."""
    lines = [_sentence(_letter_claim(w, c)) for w, c in zip(words, letters)]
    order = letters if order is None else order
    lines.append(f'Concatenating {_quote_list(order)} gives "{"".join(order)}".')
    lines.append(answer_sentence(final))
    return "\n".join(lines)


class LastLetterTask(Task):
    name = "last_letter"
    has_ood = True

    def question(self, words: list[str]) -> str:
        return f'Take the last letters of the words in "{" ".join(words)}" and concatenate them.'

    def _sample(self, rng: random.Random, ood: bool) -> tuple[str, str, dict[str, Any]]:
        words = random_words(rng, OOD_LENGTH if ood else rng.choice(IN_DISTRIBUTION_LENGTHS))
        return self.question(words), "".join(w[-1] for w in words), {"words": words}

    def words(self, problem: Problem) -> list[str]:
        """The word list, recovered from the question so loaded problems work too."""
        words = parse_quoted_words(problem.question)
        if words is None:
            raise ValueError(f"{self.name}: no quoted word list in question {problem.question[:80]!r}")
        return words

    def reference_solution(self, problem: Problem) -> str:
        words = self.words(problem)
        letters = [w[-1] for w in words]
        return _solution(words, letters, "".join(letters))

    def normalize_answer(self, value: str) -> str | None:
        value = re.sub(r"\s+", "", value).lower()
        return value if value.isascii() and value.isalpha() else None

    # ---- verification ---------------------------------------------------------------------------

    def verification_rationale(self, problem: Problem, solution: str, rationale_format: str = "quoted") -> str:
        words = parse_quoted_words(problem.question)
        if words is None:  # a loaded question in another wording: only the answer can be checked
            return self.finish_rationale(problem, solution, [], None)
        claims = [(m.group(1).lower(), m.group(2).lower()) for m in _STEP.finditer(solution)]
        used = [False] * len(claims)
        lines, first_wrong = [], None
        for i, word in enumerate(words, start=1):
            truth = _letter_claim(word, word[-1])
            # The solution's step for this word (steps may come in another order, or be skipped).
            j = next((k for k, (w, _) in enumerate(claims) if w == word and not used[k]), None)
            if j is None:
                lines.append(skip_line(f"Step {i}", f'"{word}"', truth))
                right = False
            else:
                used[j] = True
                right = claims[j][1] == word[-1]
                lines.append(check_line(f"Step {i}", _letter_claim(*claims[j]), truth, right))
            if not right:
                first_wrong = first_wrong or i
        for (word, letter), was_used in zip(claims, used):
            if not was_used:
                shown = word[:20]
                lines.append(check_line("Extra step", _letter_claim(shown, letter), f'"{shown}" is not in the list', False))
        i = len(words) + 1
        answer = "".join(w[-1] for w in words)
        truth = f'{_quote_list(list(answer))} give "{answer}"'
        concat = _CONCAT.findall(solution)
        claim = concat[-1].lower() if concat else None
        if claim is None:
            lines.append(skip_line(f"Step {i}", "the concatenation", truth))
        else:
            lines.append(check_line(f"Step {i}", f'the letters give "{claim[:20]}"', truth, claim == answer))
        if claim != answer:
            first_wrong = first_wrong or i
        return self.finish_rationale(problem, solution, lines, first_wrong)

    # ---- bootstrapping --------------------------------------------------------------------------

    def perturbation_kinds(self) -> tuple[str, ...]:
        return ("wrong_letter", "skipped_word", "wrong_order", "wrong_final", "truncated")

    def perturb(self, problem: Problem, kind: str, rng: random.Random) -> str | None:
        words = self.words(problem)
        letters = [w[-1] for w in words]
        i = rng.randrange(len(words))
        if kind == "wrong_letter":
            # The usual slips: the first letter, the second to last, or any other letter.
            word = words[i]
            choices = [word[0], word[-2] if len(word) > 1 else word[0], other_letter(rng, word[-1])]
            letters[i] = rng.choice(choices)
            return _solution(words, letters, "".join(letters))
        if kind == "skipped_word":
            kept = [k for k in range(len(words)) if k != i]
            kept_letters = [letters[k] for k in kept]
            return _solution([words[k] for k in kept], kept_letters, "".join(kept_letters))
        if kind == "wrong_order":
            order = letters[:]
            while len(set(order)) > 1 and order == letters:
                rng.shuffle(order)
            return _solution(words, letters, "".join(order), order)
        if kind == "wrong_final":
            final = list("".join(letters))
            edit = rng.choice(("drop", "change", "add"))
            if edit == "drop" and len(final) > 1:
                del final[i]
            elif edit == "add":
                final.insert(rng.randrange(len(final) + 1), other_letter(rng, ""))
            else:
                final[i] = other_letter(rng, final[i])
            return _solution(words, letters, "".join(final))
        if kind == "truncated":
            return truncate(self.reference_solution(problem), rng)
        raise ValueError(f"{self.name}: unknown perturbation kind {kind!r}")
