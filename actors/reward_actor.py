"""RewardActor: the one reward interface of the RL loops, whatever scores the responses.

    actor = RewardActor.remote({"kind": "serve", "app_name": "genrm", "mode": "cot", "k": 4})
    ref = actor.score.remote(prompts, responses)      # returns at once: roll out the next batch meanwhile
    batch = ray.get(ref)                              # RewardBatch(rewards, details)

Kinds (``source["kind"]``):
- ``serve``: the served GenRM through ``genrm_ray.reward_client.RewardClient``; every other key is a
  RewardClient keyword (``url`` | ``app_name`` | ``handle``, ``token``, ``mode``, ``k``, ``adaptive``,
  ``task``, ``batch_size``, ``retries``, ``backoff_s``, ``timeout_s``).
- ``discriminative``: ``genrm_ray.scoring.DiscriminativeScorer`` over ``model_dir`` (a classifier
  export), ``task``, optional ``batch_size``.
- ``oracle``: the task's grader, ``task``; ``labels`` (the reference answers) are then required.
  For comparison runs only: it needs the answers a deployed verifier never has.

``prompt`` is the policy prompt (``prompts.solve_prompt(task, question)``, or the bare question);
the discriminative and oracle kinds recover the question from it as the reward server does.

``score`` is a coroutine, so the actor is an async actor: calls run concurrently in its event loop
and the caller holds an ObjectRef while it keeps generating. The actor asks Ray for no CPU by
default (the serve and oracle kinds wait on I/O or grade strings); give the discriminative kind CPUs
with ``RewardActor.options(num_cpus=1)``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Sequence

import ray

from genrm_ray import prompts
from genrm_ray.reward_client import RewardBatch, RewardClient

KINDS = ("serve", "discriminative", "oracle")


def question_of(task: str, prompt: str, i: int) -> str:
    """The question in a policy prompt, as the reward server recovers it; ValueError naming the item."""
    try:
        return prompts.question_of_prompt(task, prompt)  # the server's rule, so every source reads prompts alike
    except ValueError as e:
        raise ValueError(f"prompts[{i}]: {e}") from None


def _check_lengths(prompts: Sequence[str], responses: Sequence[str], labels: Sequence[str] | None) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"prompts has {len(prompts)} entries but responses has {len(responses)}")
    if labels is not None and len(labels) != len(prompts):
        raise ValueError(f"labels has {len(labels)} entries but prompts has {len(prompts)}")


def _detail(p: float) -> dict:
    # The served detail shape, for sources that score in one step (no rationales).
    return {"p_yes": [p], "k_used": 1, "rationale_tokens": 0, "unfinished": 0}


class DiscriminativeSource:
    """The discriminative RM baseline: sigmoid of the classifier head over the direct verify prompt."""

    def __init__(self, model_dir: str, task: str, batch_size: int = 32):
        from genrm_ray.scoring import DiscriminativeScorer, is_classifier_dir
        from genrm_ray.tasks import get_task

        get_task(task)  # unknown task: fail at construction
        if not is_classifier_dir(model_dir):
            raise ValueError(f"model_dir {model_dir} is not a sequence classifier (config.json architectures)")
        self.task = task
        self.scorer = DiscriminativeScorer(str(model_dir), batch_size=batch_size)
        # One call at a time: a fast tokenizer shared by two threads fails ("Already borrowed").
        self.lock = asyncio.Lock()

    async def ascore(self, prompts, responses, labels=None) -> RewardBatch:
        from genrm_ray.scoring import VerifyItem

        _check_lengths(prompts, responses, labels)
        items = [VerifyItem(self.task, question_of(self.task, p, i), r) for i, (p, r) in enumerate(zip(prompts, responses))]
        # The forward passes run in a thread so the actor's event loop keeps accepting calls.
        async with self.lock:
            scores = await asyncio.to_thread(self.scorer.score_direct, items)
        return RewardBatch([s.reward for s in scores], [_detail(s.reward) for s in scores])


class OracleSource:
    """Ground-truth reward: 1.0 if the task's grader accepts the response's final answer, else 0.0."""

    def __init__(self, task: str):
        from genrm_ray.tasks import get_task

        self.task = get_task(task)

    async def ascore(self, prompts, responses, labels=None) -> RewardBatch:
        if labels is None:
            raise ValueError(f"the oracle reward (task {self.task.name!r}) needs labels: the reference answer of each prompt")
        _check_lengths(prompts, responses, labels)
        rewards = []
        for i, (prompt, response, label) in enumerate(zip(prompts, responses, labels)):
            answer = self.task.normalize_answer(str(label)) if label is not None else None
            if answer is None:
                raise ValueError(f"labels[{i}] = {label!r} is not a valid {self.task.name!r} answer")
            problem = self.task.make_problem(question_of(self.task.name, prompt, i), answer)
            rewards.append(1.0 if self.task.is_correct(response, problem) else 0.0)
        return RewardBatch(rewards, [_detail(r) for r in rewards])


def make_source(source: dict[str, Any]):
    """The scorer behind a RewardActor (anything with ``async ascore(prompts, responses, labels)``)."""
    if not isinstance(source, dict) or "kind" not in source:
        raise ValueError(f"reward source must be a dict with a 'kind' in {KINDS}, got {source!r}")
    options = dict(source)
    kind = options.pop("kind")
    cls = {"serve": RewardClient, "discriminative": DiscriminativeSource, "oracle": OracleSource}.get(kind)
    if cls is None:
        raise ValueError(f"unknown reward source kind {kind!r}; expected one of {KINDS}")
    known = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"reward source {kind!r}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**options)


@ray.remote(num_cpus=0)
class RewardActor:
    """Holds one reward source; ``score`` calls run concurrently (async actor)."""

    def __init__(self, source: dict):
        self.kind = source.get("kind") if isinstance(source, dict) else None
        self.source = make_source(source)

    async def score(self, prompts: list[str], responses: list[str], labels: list[str] | None = None) -> RewardBatch:
        return await self.source.ascore(prompts, responses, labels)


__all__ = ["DiscriminativeSource", "KINDS", "OracleSource", "RewardActor", "make_source", "question_of"]
