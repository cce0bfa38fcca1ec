"""veRL custom reward functions over the served GenRM. This file's path is veRL's
``custom_reward_function.path``; pick the function by the reward manager in use:

| veRL path | ``custom_reward_function.name`` | how veRL calls it |
|---|---|---|
| reward loop (``use_reward_loop=True``, the default) | ``compute_score_async`` | one awaited call per sample, gathered into batches |
| ``reward_manager=naive`` (legacy) | ``compute_score`` | one blocking call per sample |
| ``reward_manager=batch`` | ``compute_score_batch`` | one call per batch |

Call shapes (volcengine/verl at b178a3c): verl/workers/reward_manager/naive.py and
verl/experimental/reward_loop/reward_manager/naive.py call
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` (the reward loop adds
``reward_router_address=`` and ``reward_model_tokenizer=`` when a reward model router exists);
verl/workers/reward_manager/batch.py calls ``compute_score(data_sources=, solution_strs=,
ground_truths=, extra_infos=)``. verl/trainer/ppo/reward.py ``get_custom_reward_fn`` merges
``custom_reward_function.reward_kwargs`` into every call: those are the options below.

The verifier needs the problem, and veRL passes only the response: the question comes from
``extra_info["question"]`` (veRL's examples/data_preprocess/gsm8k.py stores it there; another key
via ``question_key``). A sample without it raises. Each function returns
``{"score": reward, "k_used", "unfinished", "rationale_tokens", "blank"}`` (veRL uses ``score`` and
logs the rest). The endpoint comes from ``url`` / ``token`` / ``mode`` / ``k`` / ``adaptive`` /
``task`` in reward_kwargs, else the GENRM_REWARD_* environment (``genrm_ray.integrations.common``).
A service failure raises ``RewardServiceError``: veRL stops instead of training on a made-up reward.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from genrm_ray.integrations.common import ascore_nonblank, client_options_from_env
from genrm_ray.reward_client import RewardClient

CLIENT_OPTIONS = ("url", "token", "mode", "k", "adaptive", "task", "batch_size", "retries", "backoff_s", "timeout_s")
# Passed by veRL's reward loop when a reward-model router runs; a served GenRM does not need them.
VERL_EXTRAS = ("reward_router_address", "reward_model_tokenizer")
DEFAULT_WINDOW_S = 0.02

_clients: dict[tuple, RewardClient] = {}
_gatherers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, _Gatherer]] = weakref.WeakKeyDictionary()


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(RewardClient options, adapter options) from veRL's reward_kwargs."""
    unknown = set(kwargs) - set(CLIENT_OPTIONS) - set(VERL_EXTRAS) - {"question_key", "blank_reward", "window_s"}
    if unknown:
        raise TypeError(f"unknown custom_reward_function.reward_kwargs {sorted(unknown)}; known: "
                        f"{sorted(CLIENT_OPTIONS + ('question_key', 'blank_reward', 'window_s'))}")
    options = {k: kwargs[k] for k in CLIENT_OPTIONS if kwargs.get(k) is not None}
    if "url" not in options:
        options = {**client_options_from_env(), **options}
    adapter = {"question_key": kwargs.get("question_key", "question"), "blank_reward": float(kwargs.get("blank_reward", 0.0)),
               "window_s": float(kwargs.get("window_s", DEFAULT_WINDOW_S))}
    return options, adapter


def client(**reward_kwargs: Any) -> RewardClient:
    """The (per-process, cached) RewardClient that calls with these reward_kwargs use."""
    options, _ = _split(reward_kwargs)
    key = tuple(sorted(options.items()))
    if key not in _clients:
        _clients[key] = RewardClient(**options)
    return _clients[key]


def question_of(extra_info: Any, question_key: str, where: str) -> str:
    if not isinstance(extra_info, dict) or not isinstance(extra_info.get(question_key), str) or not extra_info[question_key].strip():
        found = sorted(extra_info) if isinstance(extra_info, dict) else type(extra_info).__name__
        raise ValueError(f"{where}: GenRM verifies a solution against its problem, but extra_info has no text "
                         f"{question_key!r} (found {found}); store the question in extra_info[{question_key!r}] when "
                         "preparing the parquet (veRL's examples/data_preprocess/gsm8k.py does)")
    return extra_info[question_key]


def _result(reward: float, detail: dict) -> dict[str, Any]:
    return {"score": reward, "k_used": detail["k_used"], "unfinished": detail["unfinished"],
            "rationale_tokens": detail["rationale_tokens"], "blank": bool(detail.get("blank"))}


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  **reward_kwargs: Any) -> dict[str, Any]:
    """One sample, blocking (veRL's naive reward manager). One request per call: prefer the batch
    or async form for throughput."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], **reward_kwargs)[0]


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[dict | None], **reward_kwargs: Any) -> list[dict[str, Any]]:
    """A batch, blocking (veRL's batch reward manager): one result per sample, in order."""
    n = len(solution_strs)
    for name, seq in (("data_sources", data_sources), ("ground_truths", ground_truths), ("extra_infos", extra_infos)):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries but solution_strs has {n}")
    _, adapter = _split(reward_kwargs)
    questions = [question_of(e, adapter["question_key"], f"sample {i}") for i, e in enumerate(extra_infos)]
    rewards, details = asyncio.run(ascore_nonblank(client(**reward_kwargs), questions, list(solution_strs),
                                                   list(ground_truths), adapter["blank_reward"]))
    return [_result(r, d) for r, d in zip(rewards, details)]


async def compute_score_async(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                              **reward_kwargs: Any) -> dict[str, Any]:
    """One sample, awaited (veRL's reward loop). Calls that arrive on the same event loop within
    ``window_s`` (default 20 ms) go to the server as one request (the reward loop starts one call per
    sample at once); each call gets its own result, or the batch's error."""
    options, adapter = _split(reward_kwargs)
    question = question_of(extra_info, adapter["question_key"], "sample")
    loop = asyncio.get_running_loop()
    key = (tuple(sorted(options.items())), adapter["blank_reward"], adapter["window_s"])
    per_loop = _gatherers.setdefault(loop, {})
    if key not in per_loop:
        per_loop[key] = _Gatherer(client(**reward_kwargs), adapter["blank_reward"], adapter["window_s"])
    reward, detail = await per_loop[key].score(question, solution_str, ground_truth)
    return _result(reward, detail)


class _Gatherer:
    """Collects concurrent single-sample calls on one event loop into one scoring call."""

    def __init__(self, client: RewardClient, blank_reward: float, window_s: float):
        self.client, self.blank_reward, self.window_s = client, blank_reward, window_s
        self.pending: list[tuple[str, str, Any, asyncio.Future]] = []
        self.flush: asyncio.Task | None = None
        self.requests = 0  # scoring calls made (tests check that samples were gathered)

    async def score(self, question: str, response: str, label: Any) -> tuple[float, dict]:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((question, response, label, future))
        if self.flush is None:
            self.flush = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.window_s)
        batch, self.pending, self.flush = self.pending, [], None
        self.requests += 1
        try:
            rewards, details = await ascore_nonblank(self.client, [b[0] for b in batch], [b[1] for b in batch],
                                                     [b[2] for b in batch], self.blank_reward)
        except BaseException as e:  # every waiting sample gets the failure, none a reward
            for *_, future in batch:
                if not future.done():
                    future.set_exception(e)
            if not isinstance(e, Exception):  # cancellation, interpreter exit: let it go on
                raise
            return
        for (*_, future), reward, detail in zip(batch, rewards, details):
            if not future.done():
                future.set_result((reward, detail))


def gatherer_requests() -> int:
    """Scoring calls made by ``compute_score_async`` on the current event loop (for logging and tests)."""
    return sum(g.requests for g in _gatherers.get(asyncio.get_running_loop(), {}).values())


__all__ = ["CLIENT_OPTIONS", "client", "compute_score", "compute_score_async", "compute_score_batch",
           "gatherer_requests", "question_of"]
