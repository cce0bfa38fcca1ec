"""OpenRLHF custom reward function over the served GenRM. This file's path is the option value:

    export GENRM_REWARD_URL=http://10.0.0.5:8000 GENRM_REWARD_TOKEN=... GENRM_REWARD_MODE=cot GENRM_REWARD_K=4
    python -m openrlhf.cli.train_ppo_ray ... \
        --reward.remote_url $(python -c 'import genrm_ray.integrations.openrlhf as m; print(m.__file__)')
    # (OpenRLHF before the 2026 CLI rename: --remote_rm_url)

OpenRLHF loads it with ``importlib.util.spec_from_file_location("reward_func", path)`` and calls
``reward_func(queries, prompts, labels)`` positionally, with lists of strings (OpenRLHF/OpenRLHF
openrlhf/utils/agent.py ``SingleTurnAgentExecutor``: one sample per call, in a thread; before
v0.9, openrlhf/utils/remote_rm_utils.py ``RemoteRewardModel``: micro-rollout batches in Ray tasks).
``queries[i]`` is ``tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False)``, so
it is ``prompts[i]`` + the response + the EOS token text; the EOS/pad texts named in
``GENRM_EOS_TOKENS`` (comma-separated; default: common ones) are stripped from its end.

Returns ``{"rewards", "scores", "extra_logs"}`` as float tensors with one entry per query, like
OpenRLHF's examples/python/reward_func.py (OpenRLHF wraps a one-sample result as
``torch.tensor([rewards])``, which keeps a tensor of shape (1,) at shape (1,)). ``scores`` (used for
dynamic filtering) equals ``rewards``: p(Yes) is already in [0, 1]. The endpoint comes from the
GENRM_REWARD_* variables (``genrm_ray.integrations.common``). A failure raises
``RewardServiceError``; OpenRLHF's executor logs it and leaves that sample without a reward.

The prompt must be the solve prompt (``genrm_ray.prompts.solve_prompt``) or the bare question:
with ``--data.apply_chat_template`` the chat markup would reach the verifier as part of the question.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from genrm_ray.integrations.common import ascore_nonblank, client_options_from_env
from genrm_ray.reward_client import RewardClient

EOS_ENV = "GENRM_EOS_TOKENS"
DEFAULT_EOS_TOKENS = ("</s>", "<pad>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>",
                      "<eos>", "<end_of_turn>", "<|end|>")
BLANK_REWARD = 0.0  # a response that is only EOS is no solution (integrations.common.ascore_nonblank)

_client: tuple[dict, RewardClient] | None = None  # one client per process, rebuilt if the environment changes


def client() -> RewardClient:
    """The RewardClient these calls use, configured from the GENRM_REWARD_* variables."""
    global _client
    options = client_options_from_env()
    if _client is None or _client[0] != options:
        _client = (options, RewardClient(**options))
    return _client[1]


def eos_tokens() -> tuple[str, ...]:
    value = os.environ.get(EOS_ENV, "")
    return tuple(t for t in (s.strip() for s in value.split(",")) if t) if value.strip() else DEFAULT_EOS_TOKENS


def response_of(query: str, prompt: str, i: int, eos: Sequence[str]) -> str:
    """The response inside ``query`` (= prompt + response + trailing EOS/pad texts)."""
    if not isinstance(query, str) or not isinstance(prompt, str):
        raise TypeError(f"queries[{i}] and prompts[{i}] must be strings, got {type(query).__name__} / {type(prompt).__name__}")
    if not query.startswith(prompt):
        raise ValueError(f"queries[{i}] does not start with prompts[{i}] (OpenRLHF sends prompt + response); "
                         f"query starts {query[:80]!r}, prompt starts {prompt[:80]!r}")
    response = query[len(prompt):]
    stripped = True
    while stripped:
        stripped = False
        response = response.rstrip()
        for token in eos:
            if response.endswith(token):
                response, stripped = response[: -len(token)], True
    return response


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None, **kwargs: Any) -> dict:
    """OpenRLHF's custom reward function contract (see the module docstring)."""
    import torch  # OpenRLHF's environment has it; the rest of this module does not need it

    if len(queries) != len(prompts):
        raise ValueError(f"queries has {len(queries)} entries but prompts has {len(prompts)}")
    if labels is not None and len(labels) != len(queries):
        raise ValueError(f"labels has {len(labels)} entries but queries has {len(queries)}")
    eos = eos_tokens()
    responses = [response_of(q, p, i, eos) for i, (q, p) in enumerate(zip(queries, prompts))]
    rewards, details = asyncio.run(ascore_nonblank(client(), list(prompts), responses, labels, BLANK_REWARD))
    r = torch.tensor(rewards, dtype=torch.float32)
    logs = {key: torch.tensor([float(d[key]) for d in details], dtype=torch.float32)
            for key in ("k_used", "rationale_tokens", "unfinished")}
    logs["blank"] = torch.tensor([float(bool(d.get("blank"))) for d in details], dtype=torch.float32)
    return {"rewards": r, "scores": r.clone(), "extra_logs": logs}


__all__ = ["DEFAULT_EOS_TOKENS", "EOS_ENV", "client", "eos_tokens", "response_of", "reward_func"]
