"""RewardActor: the one reward interface of the RL loops, whatever scores the responses.

    actor = RewardActor.remote("genrm_cot", {"app_name": "genrm", "k": 4})
    ref = actor.score.remote(prompts, responses)      # returns at once: roll out the next batch meanwhile
    batch = ray.get(ref)                              # RewardBatch(rewards, details)

The actor holds one source from ``genrm_ray.rl.rewards.REWARD_SOURCES``, built by name (a GRPO
config's ``reward.source``: genrm_cot, genrm_direct, discriminative, oracle) from its options; that
module says what each source scores with and which options it takes. An unknown name or option
fails when the actor is built, listing the known ones.

``score`` is a coroutine, so the actor is an async actor: calls run concurrently in its event loop
and the caller holds an ObjectRef while it keeps generating. The actor asks Ray for no CPU by
default (the served and oracle sources wait on I/O or grade strings); give the discriminative source
CPUs with ``RewardActor.options(num_cpus=1)``.
"""

from __future__ import annotations

from typing import Any

import ray

import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)
from genrm_ray.reward_client import RewardBatch
from genrm_ray.rl.rewards import make_source


@ray.remote(num_cpus=0)
class RewardActor:
    """Holds one reward source; ``score`` calls run concurrently (async actor)."""

    def __init__(self, source: str, options: dict[str, Any] | None = None):
        self.source = make_source(source, options)

    async def score(self, prompts: list[str], responses: list[str], labels: list[str] | None = None) -> RewardBatch:
        return await self.source.ascore(prompts, responses, labels)


__all__ = ["RewardActor"]
