"""Token-level reward placement (genrm_ray.rl.token_rewards): each sequence's reward on its last
response token, zeros elsewhere."""

from __future__ import annotations

import pytest
import torch

from genrm_ray.rl.token_rewards import last_token_rewards


def test_last_token_rewards_places_each_reward_on_its_last_response_token():
    rewards = torch.tensor([0.5, -1.0, 2.0, 0.25])
    mask = torch.tensor([
        [0, 0, 1, 1, 1],  # left padding (or prompt first): last position
        [1, 1, 0, 0, 0],  # right padding
        [0, 1, 1, 1, 0],  # prompt, response, padding
        [0, 0, 0, 0, 1],  # one response token
    ])
    out = last_token_rewards(rewards, mask)
    want = torch.zeros(4, 5)
    want[0, 4], want[1, 1], want[2, 3], want[3, 4] = 0.5, -1.0, 2.0, 0.25
    assert torch.equal(out, want)
    assert torch.equal(last_token_rewards(rewards, mask.bool()), want)
    assert out.sum(dim=1).tolist() == rewards.tolist()


def test_last_token_rewards_rejects_bad_input():
    with pytest.raises(ValueError, match=r"rows \[1\] have no response token"):
        last_token_rewards(torch.tensor([1.0, 2.0]), torch.tensor([[1, 1], [0, 0]]))
    with pytest.raises(ValueError, match=r"must be \[B=2, T\]"):
        last_token_rewards(torch.tensor([1.0, 2.0]), torch.ones(3, 4))
    with pytest.raises(ValueError, match="1-D"):
        last_token_rewards(torch.ones(2, 1), torch.ones(2, 4))
    with pytest.raises(ValueError, match="0/1"):
        last_token_rewards(torch.tensor([1.0]), torch.tensor([[0.0, 0.5]]))
