"""The served GenRM as a TRL reward function.

    from genrm_ray.integrations.trl import AsyncGenRMReward
    reward = AsyncGenRMReward(url="http://127.0.0.1:8000", mode="cot", k=4)   # token: GENRM_REWARD_TOKEN
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=..., args=GRPOConfig(...))

TRL (1.16, trl/trainer/grpo_trainer.py ``_calculate_rewards``) calls each reward function with
``prompts=``, ``completions=``, ``completion_ids=``, every other dataset column (e.g. ``answer=``),
``trainer_state=``, ``log_extra=`` and ``log_metric=`` as keyword arguments, one entry per completion,
and wants one float per completion back. It logs the function under ``__name__``
(``rewards/<name>/mean``). A callable whose ``__call__`` is ``async def`` is awaited on TRL's own
event loop, concurrently with the other async reward functions (``trl.trainer.utils.is_async_callable``).

Prompts must be what the server understands: the solve prompt ``genrm_ray.prompts.solve_prompt(task,
question)`` or the bare question. Conversational rows (lists of ``{"role", "content"}`` messages)
are reduced to the last user message (prompt) and the assistant text (completion).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from genrm_ray.integrations.common import ascore_nonblank
from genrm_ray.responses import BLANK_REWARD
from genrm_ray.reward_client import RewardClient


def _message_text(message: Any, where: str) -> str:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise TypeError(f"{where}: expected a chat message {{'role': ..., 'content': ...}}, got {message!r:.200}")
    content = message["content"]
    if not isinstance(content, str):
        raise TypeError(f"{where}: message content must be text, got {type(content).__name__} "
                        "(multimodal content cannot be verified by GenRM)")
    return content


def as_text(prompt: Any, completion: Any, i: int) -> tuple[str, str]:
    """(prompt, response) text of one TRL row, standard (strings) or conversational (message lists)."""
    if isinstance(prompt, str) and isinstance(completion, str):
        return prompt, completion
    if isinstance(prompt, list) and isinstance(completion, list):
        users = [_message_text(m, f"prompts[{i}]") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise ValueError(f"prompts[{i}]: conversational prompt has no user message to take the question from")
        for m in prompt:
            _message_text(m, f"prompts[{i}]")
        texts = [_message_text(m, f"completions[{i}]") for m in completion]
        roles = {m["role"] for m in completion}
        if roles != {"assistant"}:
            raise ValueError(f"completions[{i}]: expected only assistant messages, got roles {sorted(roles)} "
                             "(tool-calling completions are not supported)")
        return users[-1], "".join(texts)
    raise TypeError(f"prompts[{i}] / completions[{i}]: expected two strings (standard format) or two message "
                    f"lists (conversational format), got {type(prompt).__name__} / {type(completion).__name__}")


class GenRMReward:
    """Synchronous TRL reward function over the served GenRM (see the module docstring).

    Give either a ready ``client`` or RewardClient keyword arguments (``url=`` or ``app_name=``,
    ``mode``, ``k``, ``task``, ...). ``label_column``: the dataset column passed on as the reference
    answer (the server accepts and ignores it). ``blank_reward``: reward of an empty completion,
    which is not sent (``genrm_ray.responses``). Service failures raise
    ``RewardServiceError``; TRL then stops the step instead of training on made-up rewards."""

    def __init__(self, client: RewardClient | None = None, *, name: str = "genrm", label_column: str | None = "answer",
                 blank_reward: float = BLANK_REWARD, **client_options: Any):
        if client is not None and client_options:
            raise ValueError(f"give either client or RewardClient options, not both (got {sorted(client_options)})")
        self.client = client if client is not None else RewardClient(**client_options)
        self.__name__ = name  # TRL logs rewards/<__name__>/mean
        self.label_column, self.blank_reward = label_column, blank_reward
        self.last_details: list[dict] = []  # the served details of the latest call

    def _inputs(self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: dict) -> tuple[list[str], list[str], Any]:
        if len(prompts) != len(completions):
            raise ValueError(f"prompts has {len(prompts)} entries but completions has {len(completions)}")
        pairs = [as_text(p, c, i) for i, (p, c) in enumerate(zip(prompts, completions))]
        labels = kwargs.get(self.label_column) if self.label_column else None
        return [p for p, _ in pairs], [c for _, c in pairs], labels

    async def _ascore(self, prompts, completions, kwargs) -> list[float]:
        texts, responses, labels = self._inputs(prompts, completions, kwargs)
        rewards, details = await ascore_nonblank(self.client, texts, responses, labels, self.blank_reward)
        self.last_details = details
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and details:  # TRL >= 1.x: averaged into the step's logs
            log_metric(f"{self.__name__}/k_used", sum(d["k_used"] for d in details) / len(details))
            log_metric(f"{self.__name__}/blank_frac", sum(bool(d.get("blank")) for d in details) / len(details))
        return rewards

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return asyncio.run(self._ascore(prompts, completions, kwargs))


class AsyncGenRMReward(GenRMReward):
    """The same reward as a coroutine: TRL awaits it on its event loop, so the HTTP requests of
    several async reward functions overlap."""

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return await self._ascore(prompts, completions, kwargs)


__all__ = ["AsyncGenRMReward", "GenRMReward", "as_text"]
