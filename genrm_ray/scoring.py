"""GenRM rewards from a generation backend: direct p(Yes), and GenRM-CoT with majority voting.

Direct: r = p(" Yes" | x, y, I) read from one next-token distribution.

CoT: sample K rationales for the same (x, y) in one request (n=K, so the shared prompt is computed
once and prefix caching serves it), cut each at the first verification question, append the
question, and read p(" Yes") there. The reward is the mean over rationales (majority voting).
Rationales that never reach the question within ``max_rationale_tokens`` get ``unfinished_p_yes``
(0.0 by default: a verifier that did not finish checking vouches for nothing, which also keeps a
policy from earning reward with solutions too long to check); they are counted per item.

p(Yes) is the paper's raw probability by default. ``normalize=True`` gives p(Yes)/(p(Yes)+p(No)),
which ignores probability mass the model puts on other tokens; the ranking of solutions, which is
all Best-of-N and group-normalized RL advantages use, rarely differs.

Adaptive K (beyond the paper): rationales are drawn in rounds of ``round_size``; after each round,
once at least ``min_k`` are in, sampling stops when the 95% confidence half-width of the running
mean, 1.96 * s / sqrt(k), is at most ``tolerance`` (s: sample standard deviation of the p(Yes)
values), or when ``k`` rationales are in. Unanimous, confident verdicts stop at ``min_k``.

One implementation serves both kinds of backend: the scoring logic is written once as coroutines
(``ascore_direct``, ``ascore_cot``) that Ray Serve replicas await over ``AsyncVLLMBackend``; the
plain methods (``score_direct``, ``score_cot``) run them to completion over a synchronous backend.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from genrm_ray import prompts

if TYPE_CHECKING:  # a type hint only: importing scoring (config checks, before Ray) stays free of torch
    from genrm_ray.engine import GenerationBackend


@dataclass(frozen=True)
class VerifyItem:
    """One (problem, candidate solution) to verify; ``task`` picks the instruction wording."""

    task: str
    question: str
    solution: str


@dataclass
class VerifierScore:
    reward: float
    p_yes: list[float]  # one value for direct, one per rationale for CoT
    k_used: int
    rationale_tokens: int = 0  # tokens generated for rationales, all rounds together
    unfinished: int = 0  # rationales that never reached the verification question
    rationales: list[str] | None = None


@dataclass(frozen=True)
class CotSettings:
    k: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_rationale_tokens: int = 256
    unfinished_p_yes: float = 0.0
    adaptive: bool = False
    min_k: int = 2
    round_size: int = 2
    tolerance: float = 0.1
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if problem := voting_temperature_problem(self.temperature, self.k):
            raise ValueError(problem)
        if self.adaptive and not 1 <= self.min_k <= self.k:
            raise ValueError(f"min_k must be between 1 and k={self.k}, got {self.min_k}")
        if self.round_size < 1:
            raise ValueError(f"round_size must be >= 1, got {self.round_size}")
        if not 0.0 <= self.unfinished_p_yes <= 1.0:
            raise ValueError(f"unfinished_p_yes must be a probability, got {self.unfinished_p_yes}")


def voting_temperature_problem(temperature: float, k: int) -> str | None:
    """Why ``temperature`` cannot sample up to ``k`` rationales, or None. The one home of the rule that
    CotSettings, the eval config and the serve config check (each naming its own key)."""
    if temperature < 0:
        return f"temperature must be >= 0, got {temperature}"
    if temperature == 0 and k > 1:
        # Greedy decoding gives K copies of one rationale: voting over them is K times the cost of k=1.
        return f"temperature=0 (greedy) makes all k={k} rationales identical; use k=1 or temperature > 0"
    return None


def settled(p_yes: Sequence[float], settings: CotSettings) -> bool:
    """The adaptive stopping rule (see module docstring)."""
    k = len(p_yes)
    if k >= settings.k:
        return True
    if not settings.adaptive or k < settings.min_k:
        return False
    mean = sum(p_yes) / k
    s = math.sqrt(sum((p - mean) ** 2 for p in p_yes) / (k - 1)) if k > 1 else 0.0
    return 1.96 * s / math.sqrt(k) <= settings.tolerance


class _Awaitable:
    """Presents a synchronous backend through the coroutine interface the scoring logic awaits."""

    def __init__(self, backend: GenerationBackend):
        self.tokenizer = backend.tokenizer
        self._backend = backend

    async def generate(self, prompts_, **kwargs):
        return self._backend.generate(prompts_, **kwargs)

    async def next_token_logprobs(self, prompts_, token_ids):
        return self._backend.next_token_logprobs(prompts_, token_ids)


class GenRMScorer:
    """Scores (x, y) pairs with a trained GenRM served by a synchronous or an async backend."""

    def __init__(self, backend, normalize: bool = False):
        self.is_async = inspect.iscoroutinefunction(backend.generate)
        self.backend = backend if self.is_async else _Awaitable(backend)
        self.normalize = normalize
        self.yes_id, self.no_id = prompts.yes_no_token_ids(backend.tokenizer)

    # Synchronous entry points (offline evaluation, Ray Data, tests).
    def score_direct(self, items: Sequence[VerifyItem]) -> list[VerifierScore]:
        return self._run(self.ascore_direct(items))

    def score_cot(
        self, items: Sequence[VerifyItem], settings: CotSettings = CotSettings(), return_rationales: bool = False
    ) -> list[VerifierScore]:
        return self._run(self.ascore_cot(items, settings, return_rationales))

    def p_yes(self, verify_prompts: Sequence[str]) -> list[float]:
        """p(" Yes") after already formatted verification prompts (e.g. a held-out SFT file's)."""
        return self._run(self.ap_yes(verify_prompts))

    def _run(self, coro):
        if self.is_async:
            coro.close()
            raise TypeError("this scorer wraps an async backend: await ascore_direct / ascore_cot instead")
        return asyncio.run(coro)

    async def ap_yes(self, verify_prompts: Sequence[str]) -> list[float]:
        """p(" Yes") (or the normalized form) as the next token after each prompt."""
        if not verify_prompts:
            return []
        logprobs = await self.backend.next_token_logprobs(verify_prompts, [self.yes_id, self.no_id])
        out = []
        for lp_yes, lp_no in logprobs:
            p_yes, p_no = math.exp(lp_yes), math.exp(lp_no)
            out.append(p_yes / (p_yes + p_no) if self.normalize else p_yes)
        return out

    async def ascore_direct(self, items: Sequence[VerifyItem]) -> list[VerifierScore]:
        ps = await self.ap_yes([prompts.verify_direct_prompt(i.task, i.question, i.solution) for i in items])
        return [VerifierScore(reward=p, p_yes=[p], k_used=1) for p in ps]

    async def ascore_cot(
        self,
        items: Sequence[VerifyItem],
        settings: CotSettings = CotSettings(),
        return_rationales: bool = False,
    ) -> list[VerifierScore]:
        cot_prompts = [prompts.verify_cot_prompt(i.task, i.question, i.solution) for i in items]
        scores = [VerifierScore(0.0, [], 0, rationales=[] if return_rationales else None) for _ in items]
        active = list(range(len(items)))
        drawn = 0  # every active item has this many rationales: rounds advance them together
        while active:
            # Fixed K draws all K in one request, so the prompt prefix is computed once.
            n = settings.k if not settings.adaptive else (settings.min_k if drawn == 0 else settings.round_size)
            n = min(n, settings.k - drawn)
            completions = await self.backend.generate(
                [cot_prompts[i] for i in active],
                n=n,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=settings.max_rationale_tokens,
                seed=None if settings.seed is None else settings.seed + drawn,
            )
            pending: list[tuple[int, int, str]] = []  # (item, slot in its p_yes, text to score)
            for i, samples in zip(active, completions):
                for c in samples:
                    rationale, sep, _ = c.text.partition(prompts.DIRECT_QUESTION)
                    score = scores[i]
                    score.rationale_tokens += len(c.token_ids)
                    score.k_used += 1
                    if return_rationales:
                        score.rationales.append(rationale + sep)
                    if sep:
                        pending.append((i, len(score.p_yes), cot_prompts[i] + rationale + prompts.DIRECT_QUESTION))
                        score.p_yes.append(math.nan)  # filled in below
                    else:
                        score.unfinished += 1
                        score.p_yes.append(settings.unfinished_p_yes)
            for (i, slot, _), p in zip(pending, await self.ap_yes([text for _, _, text in pending])):
                scores[i].p_yes[slot] = p
            drawn += n
            active = [i for i in active if not settled(scores[i].p_yes, settings)]
        for s in scores:
            s.reward = sum(s.p_yes) / len(s.p_yes)
        return scores


class DiscriminativeScorer:
    """The discriminative-RM baseline: sigmoid of a one-logit classifier head over the direct prompt.

    It reads the same ``verify_direct_prompt`` text the GenRM reads (the trainer's discriminative
    objective trains on D_verify's prompts), tokenized with the tokenizer's own special tokens as in
    training, and pooled at the last non-pad token (transformers' sequence-classification rule).
    """

    def __init__(self, model_dir: str, batch_size: int = 32):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id  # needed to find the last real token
        self.batch_size = batch_size

    def p_correct(self, verify_prompts: Sequence[str]) -> list[float]:
        import torch

        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(verify_prompts), self.batch_size):
                batch = self.tokenizer(list(verify_prompts[start : start + self.batch_size]), return_tensors="pt",
                                       padding=True, add_special_tokens=True)
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                out.extend(torch.sigmoid(logits[:, 0].float()).tolist())
        return out

    def score_direct(self, items: Sequence[VerifyItem]) -> list[VerifierScore]:
        ps = self.p_correct([prompts.verify_direct_prompt(i.task, i.question, i.solution) for i in items])
        return [VerifierScore(reward=p, p_yes=[p], k_used=1) for p in ps]


def is_classifier_dir(model_dir: str) -> bool:
    """Whether a saved HF model is a sequence classifier (the discriminative RM) rather than an LM."""
    import json
    from pathlib import Path

    config = json.loads((Path(model_dir) / "config.json").read_text())
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])
