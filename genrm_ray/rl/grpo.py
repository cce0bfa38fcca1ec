"""GRPO math (Shao et al., 2024, "DeepSeekMath"): group-normalized advantages, token log-probs and the
clipped policy-gradient loss with a k3 KL penalty to a frozen reference. Pure torch, no Ray.

A rollout batch holds B = prompts x G sequences, each ``prompt + response`` right-padded to T tokens.
Log-prob tensors are [B, T] and aligned with ``input_ids``: position t holds log p(input_ids[t] | < t)
(position 0, which nothing predicts, and padding hold 0). ``response_mask`` is 1 exactly on the response tokens,
the only tokens whose log-probs are trained.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from genrm_ray.env import release_free_memory


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6, scale: bool = True) -> torch.Tensor:
    """(r - group mean) / (group std + eps) for consecutive groups of ``group_size`` rewards.

    ``rewards`` is [B * G] with each prompt's G responses next to each other. A group whose rewards are
    all equal gets advantage 0 (it carries no signal about which response is better). ``scale=False``
    only centres (Dr. GRPO's variant). The std is the unbiased one, as in the GRPO paper's code.
    """
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D [B*G], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of group_size={group_size}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or inf")
    groups = rewards.float().view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale and group_size > 1:
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    return centred.flatten()


@dataclass
class Rollout:
    """One sampled response, as the rollout engine (actors/rollout_actor.py) returns it. ``finished``:
    stopped on EOS or a stop string, not on max_tokens."""

    text: str  # stop strings removed
    token_ids: list[int]  # what was sampled (the trained tokens), EOS included when it stopped on EOS
    prompt_token_ids: list[int]  # the prompt as the engine saw it (with <s>)
    finished: bool


@dataclass
class RolloutBatch:
    """Tensors of one GRPO update. ``advantages``/``old_logprobs``/``ref_logprobs`` are filled in by the
    driver after scoring (``make_rollout_batch`` leaves them None)."""

    input_ids: torch.Tensor  # [B, T] long, prompt + response, right-padded
    attention_mask: torch.Tensor  # [B, T] long, 1 on real tokens
    response_mask: torch.Tensor  # [B, T] float, 1 on response tokens only
    advantages: torch.Tensor | None = None  # [B]
    old_logprobs: torch.Tensor | None = None  # [B, T], the policy that sampled (no grad); None = train_step's own forward
    ref_logprobs: torch.Tensor | None = None  # [B, T], the frozen reference; None = no KL term

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: slice | torch.Tensor) -> RolloutBatch:
        """The rows ``index`` of every tensor (e.g. one rank's shard or one micro-batch)."""
        return RolloutBatch(**{f.name: None if (v := getattr(self, f.name)) is None else v[index] for f in fields(self)})


def make_rollout_batch(
    prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int, advantages: torch.Tensor | None = None
) -> RolloutBatch:
    """Concatenate each prompt with its response and right-pad to the longest sequence."""
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if not prompt_ids:
        raise ValueError("make_rollout_batch: empty batch")
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        if not p:
            raise ValueError(f"prompt_ids[{i}] is empty (a prompt needs at least <s>)")
        if not r:
            # Nothing to train on; vLLM always returns at least one token (EOS), so this is a caller bug.
            raise ValueError(f"response_ids[{i}] is empty")
    width = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids))
    batch = len(prompt_ids)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(batch, width, dtype=torch.long)
    response_mask = torch.zeros(batch, width, dtype=torch.float32)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        attention_mask[i, : len(p) + len(r)] = 1
        response_mask[i, len(p) : len(p) + len(r)] = 1
    if advantages is not None and advantages.shape != (batch,):
        raise ValueError(f"advantages must have shape ({batch},), got {tuple(advantages.shape)}")
    return RolloutBatch(input_ids, attention_mask, response_mask, advantages)


def token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   response_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] log p(input_ids[:, t] | input_ids[:, :t]) in fp32; 0 in column 0 (nothing predicts it)
    and at padding (attention_mask 0), so values do not depend on how a batch was padded.

    ``model`` is a causal LM, or a ``TargetTokenLoss`` around one (bare or inside a DeepSpeed engine).
    The wrapped model applies the vocabulary-sized head at the response tokens only (``response_mask``,
    required then) and gives 0 elsewhere: GRPO trains nothing else. On SmolLM2 the head with its fp32
    softmax at every position made a forward and backward of 16 sequences 3x slower on CPU, and a whole
    update 1.24x (docs/rl.md, "GRPO on the pretrained policy").
    """
    from genrm_ray.train.step import TargetTokenLoss

    if isinstance(getattr(model, "module", model), TargetTokenLoss):
        if response_mask is None:
            raise ValueError("token_logprobs: a TargetTokenLoss model needs response_mask (the positions it scores)")
        cross_entropy = model(input_ids=input_ids, attention_mask=attention_mask, loss_mask=response_mask)
        return F.pad(-cross_entropy, (1, 0))
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    targets = input_ids[:, 1:]
    # log_softmax at the target only: logit - logsumexp, without a [B, T, V] log-prob tensor.
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return F.pad(picked, (1, 0)) * attention_mask.to(picked.dtype)


def micro_batches(batch: RolloutBatch, count: int) -> list[RolloutBatch]:
    """``batch`` in ``count`` near-equal consecutive parts, each cut to its own longest sequence
    (right padding beyond it is dead compute). Rows keep their order."""
    if not 1 <= count <= len(batch):
        raise ValueError(f"cannot split {len(batch)} sequences into {count} micro-batches")
    parts = []
    for index in torch.tensor_split(torch.arange(len(batch)), count):
        part = batch.select(index)
        width = int(part.attention_mask.sum(dim=1).max())
        for f in fields(part):
            value = getattr(part, f.name)
            if value is not None and value.ndim == 2:
                setattr(part, f.name, value[:, :width])
        parts.append(part)
    return parts


@torch.no_grad()
def batch_logprobs(model: torch.nn.Module, batch: RolloutBatch, micro_batch_size: int) -> torch.Tensor:
    """``token_logprobs`` of a whole batch in micro-batches, on the model's device; [B, T] on CPU."""
    device = next(model.parameters()).device
    width = batch.input_ids.shape[1]
    out = []
    for micro in micro_batches(batch, -(-len(batch) // micro_batch_size)):
        lp = token_logprobs(model, micro.input_ids.to(device), micro.attention_mask.to(device),
                            micro.response_mask.to(device)).cpu()
        out.append(F.pad(lp, (0, width - lp.shape[1])))
    release_free_memory()  # the forward passes' peak, not held while the other GRPO roles run
    return torch.cat(out)


def _masked_sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean over the masked tokens ([B, T] -> [B]); a sequence with no tokens gives 0."""
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_eps: float,
    kl_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO objective, to minimise: -min(ratio * A, clip(ratio, 1 +- eps) * A) + kl_coef * KL.

    Per token: ratio = exp(logp - old_logp); KL is the k3 estimator exp(ref - logp) - (ref - logp) - 1
    (unbiased, always >= 0). Reduction as in the GRPO paper: the mean over each sequence's response
    tokens, then the mean over sequences (each response counts equally, whatever its length).
    ``kl_coef == 0`` or ``ref_logprobs is None`` drops the KL term. Stats are detached floats:
    loss, pg_loss, kl, clip_frac (share of response tokens where the clipped side was taken),
    ratio_mean (over response tokens).
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != response_mask.shape:
        raise ValueError(
            f"shape mismatch: logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)}, "
            f"response_mask {tuple(response_mask.shape)}"
        )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be [B]={tuple(logprobs.shape[:1])}, got {tuple(advantages.shape)}")
    mask = response_mask.float()
    adv = advantages.float().unsqueeze(1)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.min(unclipped, clipped)
    pg_loss = _masked_sequence_mean(per_token, mask).mean()
    loss = pg_loss

    use_kl = kl_coef != 0 and ref_logprobs is not None
    if use_kl:
        if ref_logprobs.shape != logprobs.shape:
            raise ValueError(f"ref_logprobs shape {tuple(ref_logprobs.shape)} != logprobs {tuple(logprobs.shape)}")
        delta = ref_logprobs - logprobs
        kl = _masked_sequence_mean(torch.exp(delta) - delta - 1, mask).mean()
        loss = loss + kl_coef * kl

    with torch.no_grad():
        tokens = mask.sum().clamp(min=1)
        stats = {
            "loss": loss.item(),
            "pg_loss": pg_loss.item(),
            "kl": kl.item() if use_kl else 0.0,
            "clip_frac": (((clipped < unclipped).float() * mask).sum() / tokens).item(),
            "ratio_mean": ((ratio * mask).sum() / tokens).item(),
        }
    return loss, stats
