"""Client of the served GenRM reward (genrm_ray/serving): over HTTP, or through a Ray Serve handle.

    client = RewardClient(url="http://127.0.0.1:8000", mode="cot", k=4)   # token: GENRM_REWARD_TOKEN
    client = RewardClient(app_name="genrm")                                      # in the same Ray cluster
    batch = client.score(prompts, responses)          # or: await client.ascore(...)
    batch.rewards, batch.details

Items are split into requests of at most ``batch_size`` (the server's ``scoring.max_items`` bounds
it), sent concurrently, and put back in order. A request that fails for a reason that may pass
(connection refused or reset, timeout, HTTP 5xx, 408, 429, a replica that died under a handle call)
is retried after ``backoff_s * 2**attempt`` seconds, ``retries`` times; then RewardServiceError names
the endpoint and the last cause. A mistake of the caller (any other 4xx, or the replica rejecting a
handle call's body) raises RewardRequestError at once with the server's message. A reply without
exactly one finite reward per item raises RewardServiceError. No path returns a made-up reward.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TOKEN_ENV = "GENRM_REWARD_TOKEN"
MODES = ("direct", "cot")
# "Try again later" 4xx codes: the request was fine, the server was not ready for it.
RETRYABLE_4XX = (408, 429)


@dataclass
class RewardBatch:
    rewards: list[float]  # one per (prompt, response), in order
    details: list[dict]  # per item, as served: p_yes (list), k_used, rationale_tokens, unfinished


class RewardServiceError(RuntimeError):
    """The reward service gave no usable answer (after retries, or a malformed reply)."""


class RewardRequestError(ValueError):
    """The service rejected the request as the caller's mistake (4xx / invalid body); not retried."""


class _Retryable(Exception):
    """One attempt failed for a reason that may pass; ``str`` is the cause."""


class RewardClient:
    """Scores (prompt, response) pairs with the served GenRM; see the module docstring."""

    def __init__(self, *, url: str | None = None, app_name: str | None = None, handle: Any = None,
                 token: str | None = None, mode: str = "cot", k: int | None = None, adaptive: bool = False,
                 task: str | None = None, batch_size: int = 64, retries: int = 3, backoff_s: float = 0.5,
                 timeout_s: float = 120.0):
        given = [name for name, v in (("url", url), ("app_name", app_name), ("handle", handle)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"RewardClient needs exactly one of url / app_name / handle, got {given or 'none'}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive int or None, got {k!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if backoff_s < 0 or timeout_s <= 0:
            raise ValueError(f"backoff_s must be >= 0 and timeout_s > 0, got {backoff_s}, {timeout_s}")
        self.url = url.rstrip("/") if url is not None else None
        self.app_name = app_name
        if app_name is not None:
            from ray import serve

            handle = serve.get_app_handle(app_name)  # raises if the app is not running in this cluster
        self.handle = handle
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.mode, self.k, self.adaptive, self.task = mode, k, adaptive, task
        self.batch_size, self.retries, self.backoff_s, self.timeout_s = batch_size, retries, backoff_s, timeout_s
        self.attempts = 0  # requests sent, retries included (the RL loop logs it; tests count it)
        if self.url is not None:
            self.endpoint = f"{self.url}/v1/rewards"
        else:
            self.endpoint = f"Serve app {app_name!r}" if app_name is not None else "Serve deployment handle"

    # --- public API -------------------------------------------------------------------------------
    async def ascore(self, prompts: Sequence[str], responses: Sequence[str],
                     labels: Sequence[str] | None = None) -> RewardBatch:
        """One reward (and the served details) per (prompt, response), in order."""
        items = self._items(prompts, responses, labels)
        if not items:
            return RewardBatch([], [])
        chunks = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        if self.url is not None:
            import aiohttp  # a Ray dependency (ray[serve])

            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
                replies = await asyncio.gather(*(self._request(chunk, session) for chunk in chunks))
        else:
            replies = await asyncio.gather(*(self._request(chunk, None) for chunk in chunks))
        return RewardBatch([r for b in replies for r in b.rewards], [d for b in replies for d in b.details])

    def score(self, prompts: Sequence[str], responses: Sequence[str], labels: Sequence[str] | None = None) -> RewardBatch:
        """Synchronous ``ascore``; from inside a running event loop, await ``ascore`` instead."""
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        if in_loop:
            raise RuntimeError("RewardClient.score called inside a running event loop; use `await client.ascore(...)`")
        return asyncio.run(self.ascore(prompts, responses, labels))

    # --- internals --------------------------------------------------------------------------------
    def _items(self, prompts, responses, labels) -> list[dict]:
        for name, seq in (("prompts", prompts), ("responses", responses), ("labels", labels)):
            if isinstance(seq, str):
                raise TypeError(f"{name} must be a sequence of strings, not one string")
        if len(prompts) != len(responses):
            raise ValueError(f"prompts has {len(prompts)} entries but responses has {len(responses)}")
        if labels is not None and len(labels) != len(prompts):
            raise ValueError(f"labels has {len(labels)} entries but prompts has {len(prompts)}")
        items = []
        for i, (p, r) in enumerate(zip(prompts, responses)):
            item = {"prompt": p, "response": r}
            if labels is not None and labels[i] is not None:
                item["label"] = labels[i]
            items.append(item)
        return items

    def _body(self, items: list[dict]) -> dict:
        body: dict[str, Any] = {"items": items, "mode": self.mode, "adaptive": self.adaptive}
        if self.k is not None:
            body["k"] = self.k
        if self.task is not None:
            body["task"] = self.task
        return body

    async def _request(self, items: list[dict], session) -> RewardBatch:
        body = self._body(items)
        cause = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.attempts += 1
            try:
                reply = await (self._post(session, body) if session is not None else self._call_handle(body))
            except _Retryable as e:
                cause = str(e)
                continue
            return self._check_reply(reply, len(items))
        raise RewardServiceError(f"{self.endpoint}: no reward after {self.retries + 1} attempts "
                                 f"(retries={self.retries}); last cause: {cause}")

    async def _post(self, session, body: dict) -> Any:
        import aiohttp

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with session.post(self.endpoint, json=body, headers=headers) as r:
                text = await r.text()
                status = r.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise _Retryable(f"{type(e).__name__}: {e}") from None
        if status >= 500 or status in RETRYABLE_4XX:
            raise _Retryable(f"HTTP {status}: {text[:500]}")
        if status >= 400:
            try:
                detail = json.loads(text).get("detail", text)
            except (ValueError, AttributeError):
                detail = text
            raise RewardRequestError(f"{self.endpoint} rejected the request (HTTP {status}): {detail}")
        try:
            return json.loads(text)
        except ValueError:
            raise RewardServiceError(f"{self.endpoint}: HTTP {status} reply is not JSON: {text[:200]!r}") from None

    async def _call_handle(self, body: dict) -> Any:
        response = self.handle.score.remote(body)
        try:
            return await asyncio.wait_for(response, self.timeout_s)
        except TimeoutError:
            response.cancel()
            raise _Retryable(f"no reply within timeout_s={self.timeout_s}") from None
        except Exception as e:  # noqa: BLE001 - sorted below into the caller's mistake or a retry
            # The replica raises RequestError / pydantic's ValidationError (both ValueErrors) for a bad
            # body; Ray re-raises them in the caller, as the error itself or as its ``cause``.
            if isinstance(e, ValueError) or isinstance(getattr(e, "cause", None), ValueError):
                raise RewardRequestError(f"{self.endpoint} rejected the request: {getattr(e, 'cause', None) or e}") from None
            # Anything else (replica died, app redeploying, back-pressure) may pass.
            raise _Retryable(f"{type(e).__name__}: {e}") from None

    def _check_reply(self, reply: Any, n: int) -> RewardBatch:
        rewards = reply.get("rewards") if isinstance(reply, dict) else None
        details = reply.get("details") if isinstance(reply, dict) else None
        if not isinstance(rewards, list) or not isinstance(details, list) or len(rewards) != n or len(details) != n:
            got = f"{len(rewards)} rewards" if isinstance(rewards, list) else f"rewards={type(rewards).__name__}"
            got += f", {len(details)} details" if isinstance(details, list) else f", details={type(details).__name__}"
            raise RewardServiceError(f"{self.endpoint}: reply has {got} for {n} items")
        for i, r in enumerate(rewards):
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
                raise RewardServiceError(f"{self.endpoint}: reply's rewards[{i}] is {r!r}, not a finite number")
        return RewardBatch([float(r) for r in rewards], details)


__all__ = ["RewardBatch", "RewardClient", "RewardRequestError", "RewardServiceError", "TOKEN_ENV"]
