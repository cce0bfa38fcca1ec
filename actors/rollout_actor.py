"""RolloutActor: the policy's vLLM engine (offline ``vllm.LLM``) for GRPO, with weight sync.

After each update the driver passes the trained policy's full HF-named state dict (an ObjectRef from
``PolicyGroup.state_dict_ref()``, so it travels through Ray's object store, not through the driver);
``update_weights`` loads it into the running engine and resets the prefix cache
(``VLLMBackend.load_weights``; the mechanism and why it is this one: genrm_ray.engine.weight_sync).
Measured on the 2-core CPU box (pack + RPC + load + cache reset, fp32): tiny (0.44 MiB) about 20 ms,
"small" (4.3 MiB) about 25 ms, so fixed RPC overhead dominates at these sizes; end to end from a
2-rank ZeRO-3 PolicyGroup (gather + object store + update_weights) about 50 ms (tiny) and 70 ms
(small). No engine restart, no KV-cache reallocation.
"""

from __future__ import annotations

from typing import Any

import ray
import torch

import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)
from genrm_ray.rl.grpo import Rollout


@ray.remote
class RolloutActor:
    """vLLM engine for the policy. ``engine``: options for ``genrm_ray.engine.vllm_backend.engine_kwargs``."""

    def __init__(self, model_dir: str, engine: dict[str, Any] | None = None):
        from genrm_ray.engine import VLLMBackend
        from genrm_ray.engine.weight_sync import with_extension

        self.backend = VLLMBackend(model_dir, **with_extension(engine or {}, "RolloutActor"))
        self.tokenizer = self.backend.tokenizer
        self.version = 0

    def generate(
        self,
        prompts: list[str],
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> list[list[Rollout]]:
        """n responses per prompt. ``stop`` None: the policy's solve-format stops
        (``genrm_ray.prompts.SOLVE_STOPS``, the ones the training pipeline samples with); [] for EOS only."""
        from genrm_ray.prompts import SOLVE_STOPS

        stop = SOLVE_STOPS if stop is None else stop
        completions = self.backend.generate(prompts, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed, stop=stop)
        # vLLM tokenizes a text prompt with the same tokenizer (add_special_tokens=True -> <s> first).
        prompt_ids = self.tokenizer(list(prompts)).input_ids
        return [
            [Rollout(c.text, list(c.token_ids), list(ids), c.finish_reason == "stop") for c in group]
            for ids, group in zip(prompt_ids, completions)
        ]

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        """log p(ids[t] | ids[:t]) under the engine's current weights, [0.0] + one per later token
        (vLLM prompt logprobs; the same alignment as ``genrm_ray.rl.grpo.token_logprobs``)."""
        from vllm import SamplingParams, TokensPrompt

        for i, ids in enumerate(token_ids):
            if len(ids) < 2:
                raise ValueError(f"token_ids[{i}] needs at least 2 tokens, got {len(ids)}")
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outputs = self.backend.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in token_ids], params, use_tqdm=False)
        result = []
        for ids, out in zip(token_ids, outputs):
            # prompt_logprobs[t] maps token id -> Logprob for position t (None at t=0).
            result.append([0.0] + [step[tok].logprob for tok, step in zip(ids[1:], out.prompt_logprobs[1:])])
        return result

    def next_token_logprobs(self, prompts: list[str], token_ids: list[int]) -> list[list[float]]:
        """log p(token | prompt) for each of ``token_ids`` (``VLLMBackend.next_token_logprobs``; unlike
        ``sequence_logprobs`` this reads the prefix cache, as generation does)."""
        return self.backend.next_token_logprobs(prompts, token_ids)

    def update_weights(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """Load the policy's HF-named ``weights`` into the engine and drop the stale prefix cache."""
        if not weights:
            raise ValueError("update_weights: empty state dict (pass rank 0's PolicyGroup.state_dict_ref())")
        self.backend.load_weights(weights)
        self.version = version

    def weights_version(self) -> int:
        return self.version

    def close(self) -> None:
        self.backend.close()
