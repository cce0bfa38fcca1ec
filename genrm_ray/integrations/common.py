"""What the framework adapters share: a RewardClient configured from environment variables (OpenRLHF
and veRL load their adapter from a file path and pass no options), and scoring with the
blank-response rule of ``genrm_ray.responses``.

Environment (read when the first reward is asked for, so a launcher may set it after import):

| variable | meaning | default |
|---|---|---|
| ``GENRM_REWARD_URL`` | base URL of the reward app, e.g. ``http://10.0.0.5:8000`` | required |
| ``GENRM_REWARD_TOKEN`` | bearer token (read by RewardClient) | none |
| ``GENRM_REWARD_MODE`` | ``cot`` (K rationales, mean p(Yes)) or ``direct`` (p(Yes)) | ``cot`` |
| ``GENRM_REWARD_K`` | rationales per item in ``cot`` mode | the server's ``scoring.cot.k`` |
| ``GENRM_REWARD_ADAPTIVE`` | ``1``: adaptive K | ``0`` |
| ``GENRM_REWARD_TASK`` | task name of the items | the server's ``scoring.task`` |
| ``GENRM_REWARD_TIMEOUT_S`` | per-request timeout | ``120`` |
| ``GENRM_REWARD_RETRIES`` | retries of a failed request (exponential backoff) | ``3`` |
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from genrm_ray.responses import BLANK_REWARD, blank_detail, is_blank
from genrm_ray.reward_client import RewardClient

URL_ENV = "GENRM_REWARD_URL"
_INT_ENV = {"k": "GENRM_REWARD_K", "retries": "GENRM_REWARD_RETRIES"}


def client_options_from_env() -> dict[str, Any]:
    """RewardClient keyword arguments from the GENRM_REWARD_* variables (see the module docstring)."""
    env = os.environ
    url = env.get(URL_ENV, "").strip()
    if not url:
        raise RuntimeError(f"{URL_ENV} is not set: point it at the GenRM reward app, e.g. "
                           f"{URL_ENV}=http://127.0.0.1:8000 (the serve config's http.port and route_prefix; docs/rl.md)")
    options: dict[str, Any] = {"url": url, "mode": env.get("GENRM_REWARD_MODE", "cot").strip()}
    for key, name in _INT_ENV.items():
        if env.get(name, "").strip():
            try:
                options[key] = int(env[name])
            except ValueError:
                raise ValueError(f"{name}={env[name]!r} is not an integer") from None
    adaptive = env.get("GENRM_REWARD_ADAPTIVE", "0").strip().lower()
    if adaptive not in ("0", "1", "true", "false", ""):
        raise ValueError(f"GENRM_REWARD_ADAPTIVE={adaptive!r}: use 0 or 1")
    options["adaptive"] = adaptive in ("1", "true")
    if env.get("GENRM_REWARD_TASK", "").strip():
        options["task"] = env["GENRM_REWARD_TASK"].strip()
    if env.get("GENRM_REWARD_TIMEOUT_S", "").strip():
        options["timeout_s"] = float(env["GENRM_REWARD_TIMEOUT_S"])
    return options


async def ascore_nonblank(client: RewardClient, prompts: Sequence[str], responses: Sequence[str],
                          labels: Sequence[Any] | None, blank_reward: float = BLANK_REWARD) -> tuple[list[float], list[dict]]:
    """Rewards and details per item. A blank response gets ``blank_reward`` and ``blank_detail()``
    without a request (``genrm_ray.responses``); everything else is scored by the service, whose
    failures raise (RewardServiceError / RewardRequestError)."""
    keep = [i for i, r in enumerate(responses) if not is_blank(r)]
    rewards = [float(blank_reward)] * len(responses)
    details = [blank_detail() for _ in responses]
    if keep:
        batch = await client.ascore([prompts[i] for i in keep], [responses[i] for i in keep],
                                    None if labels is None else [_label(labels[i]) for i in keep])
        for i, reward, detail in zip(keep, batch.rewards, batch.details):
            rewards[i], details[i] = reward, detail
    return rewards, details


def _label(value: Any) -> str | None:
    # Frameworks carry reference answers as str, numbers or None; the server takes text (and ignores it).
    return None if value is None else str(value)


__all__ = ["URL_ENV", "ascore_nonblank", "client_options_from_env"]
