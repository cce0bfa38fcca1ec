"""OpenRLHF custom reward function over the served GenRM. This file's path is the option value
(OpenRLHF 0.11.2, ``openrlhf.cli.train_ppo_ray``):

    export GENRM_REWARD_URL=http://10.0.0.5:8000 GENRM_REWARD_TOKEN=... GENRM_REWARD_MODE=cot GENRM_REWARD_K=4
    python -m openrlhf.cli.train_ppo_ray ... \
        --reward.remote_url $(python -c 'import genrm_ray.integrations.openrlhf as m; print(m.__file__)')

OpenRLHF's ``SingleTurnAgentExecutor`` (openrlhf/utils/agent.py) loads it with
``importlib.util.spec_from_file_location("reward_func", path)`` and, after each generation, calls
``reward_func([query], [prompt], [label])`` in a thread: one sample per call. ``query`` is
``tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False)``, i.e. the prompt, the
response and the policy's EOS text; ``genrm_ray.responses.response_of_query`` cuts the prompt off
and strips the EOS/pad texts (the common ones, plus any named in ``GENRM_EOS_TOKENS``,
comma-separated).

Returns ``{"rewards", "scores", "extra_logs"}`` as float tensors with one entry per query, like
OpenRLHF's examples/python/reward_func.py. ``scores`` equals ``rewards``: p(Yes) is already in
[0, 1]. The endpoint comes from the GENRM_REWARD_* variables (``genrm_ray.integrations.common``).

A service failure (after the client's retries) is logged at ERROR level, naming the endpoint and the
cause, and raised as ``RewardServiceError``. OpenRLHF's executor catches every exception from a
reward function, logs it at INFO and leaves that sample's reward ``None`` (docs/rl.md says what the
run does next); the ERROR line is what makes the cause visible.

The prompt must be the solve prompt (``genrm_ray.prompts.solve_prompt``) or the bare question:
with ``--data.apply_chat_template`` the chat markup would reach the verifier as part of the question.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from genrm_ray.integrations.common import ascore_nonblank, client_options_from_env
from genrm_ray.responses import response_of_query
from genrm_ray.reward_client import RewardClient, RewardServiceError

EOS_ENV = "GENRM_EOS_TOKENS"
logger = logging.getLogger("genrm_ray.integrations.openrlhf")  # OpenRLHF loads this file as module "reward_func"

_client: tuple[dict, RewardClient] | None = None  # one client per process, rebuilt if the environment changes


def client() -> RewardClient:
    """The RewardClient these calls use, configured from the GENRM_REWARD_* variables."""
    global _client
    options = client_options_from_env()
    if _client is None or _client[0] != options:
        _client = (options, RewardClient(**options))
    return _client[1]


def extra_eos_tokens() -> tuple[str, ...]:
    """EOS/pad texts named in GENRM_EOS_TOKENS, stripped besides ``genrm_ray.responses.DEFAULT_EOS_TOKENS``."""
    return tuple(t for t in (s.strip() for s in os.environ.get(EOS_ENV, "").split(",")) if t)


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None, **kwargs: Any) -> dict:
    """OpenRLHF's custom reward function contract (see the module docstring)."""
    import torch  # OpenRLHF's environment has it; the rest of this module does not need it

    if len(queries) != len(prompts):
        raise ValueError(f"queries has {len(queries)} entries but prompts has {len(prompts)}")
    if labels is not None and len(labels) != len(queries):
        raise ValueError(f"labels has {len(labels)} entries but queries has {len(queries)}")
    eos = extra_eos_tokens()
    responses = [response_of_query(q, p, i, eos) for i, (q, p) in enumerate(zip(queries, prompts))]
    try:
        rewards, details = asyncio.run(ascore_nonblank(client(), list(prompts), responses, labels))
    except RewardServiceError as e:
        # OpenRLHF logs a reward function's exception at INFO only; say it where it is seen.
        logger.error("GenRM reward failed for %d sample(s), OpenRLHF will leave them without a reward: %s", len(queries), e)
        raise
    r = torch.tensor(rewards, dtype=torch.float32)
    logs = {key: torch.tensor([float(d[key]) for d in details], dtype=torch.float32)
            for key in ("k_used", "rationale_tokens", "unfinished")}
    logs["blank"] = torch.tensor([float(bool(d.get("blank"))) for d in details], dtype=torch.float32)
    return {"rewards": r, "scores": r.clone(), "extra_logs": logs}


__all__ = ["EOS_ENV", "client", "extra_eos_tokens", "reward_func"]
