"""Reward sources of the RL loop, by name: the registry the RewardActor (actors/reward_actor.py) builds
its scorer from.

    source = make_source("oracle", {"task": "last_letter"})
    batch = await source.ascore(prompts, responses, labels)        # RewardBatch(rewards, details)

The names are exactly the values of ``reward.source`` in a GRPO config (genrm_ray.rl.config):

- ``genrm_cot``, ``genrm_direct``: the served GenRM through ``genrm_ray.reward_client.RewardClient``,
  the name fixing its ``mode``; the options are RewardClient's other keywords (``url`` | ``app_name`` |
  ``handle``, ``token``, ``task``, ``batch_size``, ``retries``, ``backoff_s``, ``timeout_s``, and for
  genrm_cot the voting ``k`` and ``adaptive``).
- ``discriminative``: ``genrm_ray.scoring.DiscriminativeScorer`` over ``model_dir`` (a classifier
  export), ``task``, optional ``batch_size``.
- ``oracle``: the task's grader, ``task`` (with ``task_options``); ``labels`` (the reference answers) are
  then required, and for a reasoning-gym task ``problems`` too (its checker needs the generated item). For
  comparison runs only: it needs the answers a deployed verifier never has.

A source is anything with ``async ascore(prompts, responses, labels=None) -> RewardBatch``; a new one
is a class or factory decorated with ``@register("name")``, whose keyword parameters are its options, or
named in a config as ``module:Class`` (imported by the RewardActor, like veRL's ``reward_manager.source:
importlib``). In a GRPO run a source gets, of the config's task (name, options and train problems), models.verifier (``model_dir``),
reward.batch_size, reward.retries, reward.cot.k / adaptive and the endpoint, those its parameters name.
``prompt`` is the policy prompt (``prompts.solve_prompt(task, question)``) or the bare question; the
discriminative and oracle sources recover the question from it as the reward server does.

No Ray here: the RewardActor holds a source, and these run (and are tested) without a cluster.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from genrm_ray import prompts
from genrm_ray.reward_client import TOKEN_ENV, RewardBatch, RewardClient

if TYPE_CHECKING:
    from genrm_ray.rl.config import GRPOConfig
    from genrm_ray.tasks import Problem, Task


class RewardSource(Protocol):
    async def ascore(self, prompts: Sequence[str], responses: Sequence[str],
                     labels: Sequence[str] | None = None) -> RewardBatch: ...


REWARD_SOURCES: dict[str, Callable[..., RewardSource]] = {}


def register(name: str) -> Callable[[Callable[..., RewardSource]], Callable[..., RewardSource]]:
    """Class / factory decorator: ``make_source(name, options)`` calls it with ``options``."""
    def add(factory: Callable[..., RewardSource]) -> Callable[..., RewardSource]:
        if name in REWARD_SOURCES:
            raise ValueError(f"reward source {name!r} is registered twice ({REWARD_SOURCES[name]} and {factory})")
        REWARD_SOURCES[name] = factory
        return factory
    return add


def option_names(name: str) -> list[str]:
    """The options ``make_source(name, ...)`` accepts (the factory's keyword parameters)."""
    return list(inspect.signature(_factory(name)).parameters)


def make_source(name: str, options: Mapping[str, Any] | None = None) -> RewardSource:
    """The source registered as ``name``, built from ``options``; unknown names, unknown options and
    missing ones fail naming the known ones."""
    factory, options = _factory(name), dict(options or {})
    params = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"reward source {name!r}: unknown option(s) {unknown}; known: {list(params)}")
    missing = [p for p, spec in params.items() if spec.default is inspect.Parameter.empty and p not in options]
    if missing:
        raise ValueError(f"reward source {name!r}: missing option(s) {missing}; known: {list(params)}")
    return factory(**options)


def source_names() -> list[str]:
    """The registered names; a config may also name ``module:Class`` (or ``module:factory``)."""
    return sorted(REWARD_SOURCES)


def _factory(name: str) -> Callable[..., RewardSource]:
    if name in REWARD_SOURCES:
        return REWARD_SOURCES[name]
    if ":" not in name:
        raise ValueError(f"unknown reward source {name!r}; known: {source_names()}, or module:Class")
    module, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"reward source {name!r}: cannot import {attr!r} from {module!r} ({e})") from None
    if not callable(factory):
        raise ValueError(f"reward source {name!r}: {attr} is not a class or factory")
    return factory


# --- the served GenRM ------------------------------------------------------------------------------

def _served(mode: str, without: Sequence[str] = ()) -> Callable[..., RewardClient]:
    """RewardClient with ``mode`` fixed by the source's name; its other keywords, less ``without``
    (voting options a direct verdict has no use for), are the options."""
    def build(**options: Any) -> RewardClient:
        return RewardClient(mode=mode, **options)

    keywords = [p for name, p in inspect.signature(RewardClient).parameters.items() if name not in ("mode", *without)]
    build.__signature__ = inspect.Signature(keywords)  # what make_source checks the options against
    build.__doc__ = f"The served GenRM, mode={mode!r} (genrm_ray.reward_client.RewardClient)."
    return build


register("genrm_cot")(_served("cot"))
register("genrm_direct")(_served("direct", without=("k", "adaptive")))
SERVED = ("genrm_cot", "genrm_direct")  # the sources a GRPO job may deploy the GenRM app for


# --- sources scored in this process ------------------------------------------------------------------

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


@register("discriminative")
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

    async def ascore(self, prompts: Sequence[str], responses: Sequence[str],
                     labels: Sequence[str] | None = None) -> RewardBatch:
        from genrm_ray.scoring import VerifyItem

        _check_lengths(prompts, responses, labels)
        items = [VerifyItem(self.task, question_of(self.task, p, i), r) for i, (p, r) in enumerate(zip(prompts, responses))]
        # The forward passes run in a thread so the actor's event loop keeps accepting calls.
        async with self.lock:
            scores = await asyncio.to_thread(self.scorer.score_direct, items)
        return RewardBatch([s.reward for s in scores], [_detail(s.reward) for s in scores])


@register("oracle")
class OracleSource:
    """Ground-truth reward: 1.0 if the task's grader accepts the response's final answer, else 0.0.

    ``problems``: the problems the prompts come from. A reasoning-gym task's checker needs the item its
    problem was generated from, which a prompt and a reference answer do not carry; the oracle grades
    those problems only (a GRPO run offers its train problems). Built-in tasks grade from the label."""

    def __init__(self, task: str, task_options: Mapping[str, Any] | None = None, problems: Sequence[Problem] = ()):
        from genrm_ray.tasks import get_task

        self.task = get_task(task, task_options)
        self.problems = {p.question: p for p in problems}

    def _problem(self, i: int, prompt: str, label: str | None) -> Problem:
        question = question_of(self.task.name, prompt, i)
        if question in self.problems:
            return self.problems[question]
        answer = self.task.normalize_answer(str(label)) if label is not None else None
        if answer is None:
            raise ValueError(f"labels[{i}] = {label!r} is not a valid {self.task.name!r} answer")
        if _needs_item(self.task):
            raise ValueError(f"prompts[{i}]: the oracle reward of reasoning-gym task {self.task.name!r} grades only the "
                             f"problems it was given ({len(self.problems)}); this question is not one of them: "
                             f"{question[:120]!r}")
        return self.task.make_problem(question, answer)

    async def ascore(self, prompts: Sequence[str], responses: Sequence[str],
                     labels: Sequence[str] | None = None) -> RewardBatch:
        if labels is None:
            raise ValueError(f"the oracle reward (task {self.task.name!r}) needs labels: the reference answer of each prompt")
        _check_lengths(prompts, responses, labels)
        rewards = [1.0 if self.task.is_correct(response, self._problem(i, prompt, label)) else 0.0
                   for i, (prompt, response, label) in enumerate(zip(prompts, responses, labels))]
        return RewardBatch(rewards, [_detail(r) for r in rewards])


def _needs_item(task: Task) -> bool:
    """A reasoning-gym task: its checker reads the generated item, not only the answer."""
    from genrm_ray.tasks.gym import ReasoningGymTask

    return isinstance(task, ReasoningGymTask)


# --- from a GRPO config ----------------------------------------------------------------------------

def needs_reward_app(cfg: GRPOConfig) -> bool:
    """A served source naming neither reward.url nor reward.app_name: the job deploys the GenRM app."""
    return cfg.reward.source in SERVED and not (cfg.reward.url or cfg.reward.app_name)


def source_options(cfg: GRPOConfig, app_name: str = "", problems: Sequence[Problem] = ()) -> dict[str, Any]:
    """The options of ``cfg.reward.source`` in a GRPO run: of what the config offers (the task, models.verifier
    as ``model_dir``, reward.batch_size / retries, reward.cot's k and adaptive, the endpoint), those the
    source's factory takes. ``app_name``: the Serve app the job deployed for a served source that names
    neither reward.url nor reward.app_name; ``problems``: the run's train problems (the oracle's)."""
    r = cfg.reward
    takes = set(option_names(r.source))
    offered: dict[str, Any] = {"task": cfg.task.name, "model_dir": cfg.models.verifier, "batch_size": r.batch_size,
                               "retries": r.retries, "k": r.cot.k, "adaptive": r.cot.adaptive}
    if cfg.task.options:
        offered["task_options"] = dict(cfg.task.options)
    if problems:
        offered["problems"] = list(problems)
    if takes & {"url", "app_name"}:  # a served source: one endpoint
        if r.url:  # the token is read here, in the driver: Ray workers do not inherit the driver's environment
            offered |= {"url": r.url, "token": os.environ.get(TOKEN_ENV)}
        elif r.app_name or app_name:
            offered["app_name"] = r.app_name or app_name
        else:
            raise ValueError(f"reward.source={r.source}: no endpoint (reward.url, reward.app_name, or the app this job deploys)")
    return {key: value for key, value in offered.items() if key in takes}


__all__ = ["DiscriminativeSource", "OracleSource", "REWARD_SOURCES", "RewardSource", "SERVED", "make_source", "source_names",
           "needs_reward_app", "option_names", "question_of", "register", "source_options"]
