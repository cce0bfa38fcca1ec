"""Random pronounceable words from a fixed syllable inventory (shared by the word tasks).

Made-up words rather than a dictionary: the space is huge (about 10^9 words of 1-3 syllables), so
splits stay large and a tiny model cannot memorize answers, and the inventory is part of the code,
so a seed gives the same words on every machine.
"""

from __future__ import annotations

import random
import re

ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
          "br", "ch", "dr", "gr", "kl", "pl", "sh", "st", "tr")  # fmt: skip
VOWELS = ("a", "e", "i", "o", "u")
# Empty codas are weighted up so vowel endings are about as common as each group of consonants.
CODAS = ("", "", "", "n", "r", "s", "l", "t", "k", "m", "x", "d", "p", "g", "y", "f")

WORD = re.compile(r"[a-z]+")


def random_word(rng: random.Random, min_syllables: int = 1, max_syllables: int = 3) -> str:
    syllables = rng.randint(min_syllables, max_syllables)
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables))


def random_words(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct random words."""
    words: list[str] = []
    while len(words) < n:
        word = random_word(rng)
        if word not in words:
            words.append(word)
    return words


def parse_quoted_words(question: str) -> list[str] | None:
    """The word list inside the first pair of double quotes of a question, if it is one."""
    m = re.search(r'"([^"]*)"', question)
    if not m:
        return None
    words = m.group(1).split()
    if not words or not all(WORD.fullmatch(w) for w in words):
        return None
    return words


def other_letter(rng: random.Random, letter: str) -> str:
    return rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != letter])
