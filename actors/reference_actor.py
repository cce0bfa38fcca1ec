"""ReferenceActor: the frozen starting policy whose log-probs anchor GRPO's KL term."""

from __future__ import annotations

import ray
import torch

import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)
from genrm_ray.rl.grpo import RolloutBatch, batch_logprobs


@ray.remote
class ReferenceActor:
    """A transformers model in eval mode, never updated (on the GPU Ray gave it, if any). ``bf16``: its
    weights in bf16, as the policy computes in DeepSpeed's bf16 mode (then the KL at step 0 is 0, not
    bf16 rounding noise, and the forward is 2-4x faster on a bf16 CPU); else fp32. The caller passes
    the policy's resolved setting (genrm_ray.train.config.resolve_bf16), so both compute alike."""

    def __init__(self, model_dir: str, micro_batch_size: int = 32, torch_threads: int = 0, bf16: bool = False):
        from transformers import AutoModelForCausalLM

        from genrm_ray.train.step import TargetTokenLoss

        if micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        if torch_threads:  # 0: as Ray set it (one per whole CPU reserved)
            torch.set_num_threads(torch_threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if bf16 else torch.float32).to(device).eval()
        model.requires_grad_(False)
        self.model = TargetTokenLoss(model)  # the head at response tokens only, as the policy computes them
        self.micro_batch_size = micro_batch_size

    def logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        """[B, T] log p(token t | < t) at the response tokens under the reference, 0 elsewhere
        (``genrm_ray.rl.grpo.token_logprobs``)."""
        return batch_logprobs(self.model, batch, self.micro_batch_size)
