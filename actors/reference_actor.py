"""ReferenceActor: the frozen starting policy whose log-probs anchor GRPO's KL term."""

from __future__ import annotations

import ray
import torch

import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)
from genrm_ray.rl.grpo import RolloutBatch, batch_logprobs


@ray.remote
class ReferenceActor:
    """A transformers model in eval mode, fp32, never updated (on the GPU Ray gave it, if any)."""

    def __init__(self, model_dir: str, micro_batch_size: int = 32):
        from transformers import AutoModelForCausalLM

        if micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
        self.model.requires_grad_(False)
        self.micro_batch_size = micro_batch_size

    def logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        """[B, T] log p(token t | < t) under the reference (``genrm_ray.rl.grpo.token_logprobs``)."""
        return batch_logprobs(self.model, batch, self.micro_batch_size)
