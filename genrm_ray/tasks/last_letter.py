"""Last-letter concatenation (Wei et al., 2022; the GenRM paper's algorithmic task).

In distribution: lists of 2-4 words; out of distribution ("ood"): lists of 6, as in the paper.
Grading policy: case-insensitive, whitespace inside the answer ignored, letters only.
"""

from __future__ import annotations

import random
import re
from typing import Any

from genrm_ray.tasks.base import Problem, Task, truncate
from genrm_ray.tasks.words import other_letter, parse_quoted_words, random_words

IN_DISTRIBUTION_LENGTHS = (2, 3, 4)
OOD_LENGTH = 6

_STEP = re.compile(r"last\s+letter\s+of\s+[\"'“]?([a-z]+)[\"'”]?\s+is\s+[\"'“]?([a-z])\b", re.IGNORECASE)
_CONCAT = re.compile(r"concatenat\w*\b[^\n]*?\bgives?\s+[\"'“]?([a-z]+)", re.IGNORECASE)


def _quote_list(letters: list[str]) -> str:
    quoted = [f'"{c}"' for c in letters]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _solution(words: list[str], letters: list[str], final: str, order: list[str] | None = None) -> str:
    """Solution text: one step per (word, claimed letter), the concatenation (of ``order``, by
    default the letters as claimed), and the final answer."""
    lines = [f'The last letter of "{w}" is "{c}".' for w, c in zip(words, letters)]
    order = letters if order is None else order
    lines.append(f'Concatenating {_quote_list(order)} gives "{"".join(order)}".')
    lines.append(f"The answer is {final}.")
    return "\n".join(lines)


class LastLetterTask(Task):
    name = "last_letter"
    domain = "last-letter concatenation problems"
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

    def verification_rationale(self, problem: Problem, solution: str) -> str:
        words = parse_quoted_words(problem.question)
        if words is None:  # a loaded question in another wording: only the answer can be checked
            return self.finish_rationale(problem, solution, [], None)
        claims = [(m.group(1).lower(), m.group(2).lower()) for m in _STEP.finditer(solution)]
        used = [False] * len(claims)
        lines, first_wrong = [], None
        for i, word in enumerate(words, start=1):
            truth = word[-1]
            j = next((k for k, (w, _) in enumerate(claims) if w == word and not used[k]), None)
            if j is None:
                lines.append(f'Step {i}: missing; "{word}" ends with "{truth}".')
            else:
                used[j] = True
                claim = claims[j][1]
                if claim == truth:
                    lines.append(f'Step {i}: "{word}" ends with "{truth}". Correct.')
                    continue
                lines.append(f'Step {i}: "{word}" ends with "{truth}", not "{claim}". Wrong.')
            first_wrong = first_wrong or i
        for (word, _), was_used in zip(claims, used):
            if not was_used:
                lines.append(f'Extra step: "{word[:20]}" is not in the list. Wrong.')
        i = len(words) + 1
        truth = "".join(w[-1] for w in words)
        concat = _CONCAT.findall(solution)
        claim = concat[-1].lower() if concat else None
        if claim is None:
            lines.append(f'Step {i}: missing; the letters give "{truth}".')
        elif claim == truth:
            lines.append(f'Step {i}: the letters give "{truth}". Correct.')
        else:
            lines.append(f'Step {i}: the letters give "{truth}", not "{claim[:20]}". Wrong.')
        if claim != truth:
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
