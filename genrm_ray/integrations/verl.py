"""veRL custom reward functions over the served GenRM (veRL 0.9.1). This file's path is veRL's
``reward.custom_reward_function.path``:

- ``name=compute_score_async``: awaited on the reward-loop worker's event loop, one call per sample,
  all samples at once; calls within ``window_s`` (20 ms) go to the server as one request.
- ``name=compute_score``: run in a thread of the worker's executor, one request per sample.

Both are called as veRL 0.9.1's reward-loop ``NaiveRewardManager.run_single``
(verl/experimental/reward_loop/reward_manager/naive.py) calls them:
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)``, plus
``reward_router_address=`` and ``reward_model_tokenizer=`` when veRL serves a reward model of its
own (ignored here). verl/trainer/ppo/reward.py ``get_custom_reward_fn`` merges
``reward.custom_reward_function.reward_kwargs`` into every call: those are the options below.

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
from typing import Any

from genrm_ray.integrations.common import ascore_nonblank, client_options_from_env
from genrm_ray.responses import BLANK_REWARD
from genrm_ray.reward_client import RewardClient

CLIENT_OPTIONS = ("url", "token", "mode", "k", "adaptive", "task", "batch_size", "retries", "backoff_s", "timeout_s")
# Passed by veRL's reward loop when veRL serves a reward model itself; a served GenRM does not need them.
VERL_EXTRAS = ("reward_router_address", "reward_model_tokenizer")
DEFAULT_WINDOW_S = 0.02

_clients: dict[tuple, RewardClient] = {}
_gatherers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, _Gatherer]] = weakref.WeakKeyDictionary()


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(RewardClient options, adapter options) from veRL's reward_kwargs."""
    unknown = set(kwargs) - set(CLIENT_OPTIONS) - set(VERL_EXTRAS) - {"question_key", "blank_reward", "window_s"}
    if unknown:
        raise TypeError(f"unknown reward.custom_reward_function.reward_kwargs {sorted(unknown)}; known: "
                        f"{sorted(CLIENT_OPTIONS + ('question_key', 'blank_reward', 'window_s'))}")
    options = {k: kwargs[k] for k in CLIENT_OPTIONS if kwargs.get(k) is not None}
    if "url" not in options:
        options = {**client_options_from_env(), **options}
    adapter = {"question_key": kwargs.get("question_key", "question"), "blank_reward": float(kwargs.get("blank_reward", BLANK_REWARD)),
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
    """One sample, blocking: one request per call (veRL runs it in an executor thread). Prefer
    ``compute_score_async``, which gathers the samples into few requests."""
    _, adapter = _split(reward_kwargs)
    question = question_of(extra_info, adapter["question_key"], "sample")
    rewards, details = asyncio.run(ascore_nonblank(client(**reward_kwargs), [question], [solution_str], [ground_truth],
                                                   adapter["blank_reward"]))
    return _result(rewards[0], details[0])


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


__all__ = ["CLIENT_OPTIONS", "client", "compute_score", "compute_score_async", "gatherer_requests", "question_of"]
