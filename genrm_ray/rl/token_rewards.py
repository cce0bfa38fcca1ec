"""Token-level reward placement for PPO-style trainers: a sequence's scalar reward sits on its last
response token and every other position is zero (PPO adds the per-token KL penalty on top)."""

from __future__ import annotations

import torch


def last_token_rewards(rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """[B] rewards, [B, T] response mask (1 on response tokens, any padding side) -> [B, T] rewards.

    Row b gets ``rewards[b]`` at the last position where ``response_mask[b]`` is 1, zeros elsewhere.
    A row with no response token has nowhere to put its reward and raises ValueError.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B], got shape {tuple(rewards.shape)}")
    if response_mask.dim() != 2 or response_mask.shape[0] != rewards.shape[0]:
        raise ValueError(f"response_mask must be [B={rewards.shape[0]}, T], got shape {tuple(response_mask.shape)}")
    mask = response_mask.bool()
    if not torch.equal(mask.to(response_mask.dtype), response_mask):
        raise ValueError("response_mask must hold only 0/1 (or bool) values")
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"response_mask rows {empty} have no response token (empty response); "
                         "a reward cannot be placed there")
    T = mask.shape[1]
    # Index of the last True per row: the first True of the row read backwards.
    last = T - 1 - mask.flip(dims=[1]).int().argmax(dim=1)
    dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
    out = torch.zeros(mask.shape, dtype=dtype, device=rewards.device)
    out[torch.arange(mask.shape[0], device=rewards.device), last] = rewards.to(dtype)
    return out


__all__ = ["last_token_rewards"]
