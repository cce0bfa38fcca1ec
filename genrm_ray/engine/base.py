"""The generation interface shared by the vLLM and transformers backends, and input checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from transformers import PreTrainedTokenizerBase


@dataclass
class Completion:
    """One sampled continuation.

    `text` never contains the stop string that ended it (nor the eos token). `token_ids` are the
    generated ids up to and including the token that completed the stop string or the eos token,
    as vLLM reports them, so they can decode to slightly more than `text`.
    """

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (eos or a stop string) | "length" (max_tokens reached)


@runtime_checkable
class GenerationBackend(Protocol):
    tokenizer: PreTrainedTokenizerBase

    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """`n` completions per prompt, in prompt order. temperature 0 is greedy."""
        ...

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> list[list[float]]:
        """log p(token | prompt) for each of `token_ids`, per prompt (prompt tokenized with <s>)."""
        ...


def check_generate_args(
    prompts: Sequence[str], n: int, temperature: float, top_p: float, max_tokens: int, stop: Sequence[str] | None
) -> list[str]:
    """Fail fast on bad sampling arguments; returns the stop strings as a list."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, got a single string")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if isinstance(stop, str):
        raise TypeError("stop must be a sequence of strings, got a single string (wrap it in a list)")
    stops = list(stop or [])
    if any(not s for s in stops):
        raise ValueError(f"stop strings must be non-empty, got {stops!r}")
    return stops


def check_token_ids(token_ids: Sequence[int], vocab_size: int) -> list[int]:
    ids = list(token_ids)
    if not ids:
        raise ValueError("token_ids is empty")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"token ids {bad} are outside the vocabulary [0, {vocab_size})")
    return ids
