"""What counts as a policy response the verifier can score, shared by the reward server, the RL
loop and the framework adapters.

- **Blank responses.** An empty or whitespace-only response (a policy that emitted EOS at once) is
  no solution. The server rejects it (422); every reward caller gives it ``BLANK_REWARD`` without a
  request and flags it with ``blank_detail()``, so one such sample cannot stop an RL run.
- **Trailing EOS / pad texts.** OpenRLHF decodes prompt + response with the special tokens kept,
  so a response arrives ending in the policy tokenizer's EOS (and pad) text. ``response_of_query``
  cuts the prompt off and strips them: ``DEFAULT_EOS_TOKENS`` plus any the caller adds (the
  server adds its own tokenizer's; the OpenRLHF adapter reads ``GENRM_EOS_TOKENS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BLANK_REWARD = 0.0
# EOS / end-of-turn / pad texts of the common chat and base tokenizers (Llama 2/3, Qwen, GPT-2,
# SmolLM, Gemma, Phi-3, Mistral).
DEFAULT_EOS_TOKENS = ("</s>", "<pad>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>",
                      "<eos>", "<end_of_turn>", "<|end|>")


def is_blank(response: str) -> bool:
    """True for a response with nothing to verify (empty or whitespace)."""
    return not response.strip()


def blank_detail() -> dict[str, Any]:
    """The per-item details of a blank response, which was not sent to the verifier."""
    return {"p_yes": [], "k_used": 0, "rationale_tokens": 0, "unfinished": 0, "blank": True}


def strip_trailing_special(text: str, tokens: Iterable[str]) -> str:
    """``text`` without trailing whitespace and any run of the given special-token texts at its end."""
    tokens = [t for t in tokens if t]
    stripped = True
    while stripped:
        stripped = False
        text = text.rstrip()
        for token in tokens:
            if text.endswith(token):
                text, stripped = text[: -len(token)], True
    return text


def response_of_query(query: str, prompt: str, i: int, extra_eos: Iterable[str] = ()) -> str:
    """The response inside an OpenRLHF query (prompt + response + trailing EOS/pad texts).
    ValueError / TypeError name entry ``i`` when the query is not its prompt followed by a response."""
    if not isinstance(query, str) or not isinstance(prompt, str):
        raise TypeError(f"queries[{i}] and prompts[{i}] must be strings, got {type(query).__name__} / {type(prompt).__name__}")
    if not query.startswith(prompt):
        raise ValueError(f"queries[{i}] does not start with prompts[{i}] (each query must be prompt + response); "
                         f"query starts {query[:80]!r}, prompt starts {prompt[:80]!r}")
    return strip_trailing_special(query[len(prompt):], (*DEFAULT_EOS_TOKENS, *extra_eos))


__all__ = ["BLANK_REWARD", "DEFAULT_EOS_TOKENS", "blank_detail", "is_blank", "response_of_query", "strip_trailing_special"]
