"""Request and response bodies of the reward API (pydantic: FastAPI validates them and publishes
them in the OpenAPI schema). Limits that depend on the server config (max items, max k, context
length, task names) are checked by the replica, which knows them; a failed check is a 422 too."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genrm_ray import prompts


class RequestError(ValueError):
    """A client-side mistake found by the replica (limits that depend on the config): HTTP 422."""


def recover_question(task: str, prompt: str) -> str:
    """prompts.question_of_prompt, with its complaint as a 4xx."""
    try:
        return prompts.question_of_prompt(task, prompt)
    except ValueError as e:
        raise RequestError(str(e)) from None


def _utf8(value: str, what: str) -> str:
    # JSON may carry lone surrogates ("\ud800"), which no tokenizer can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} is not valid UTF-8 text ({e.reason} at position {e.start})") from None
    return value


class RewardItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(min_length=1, description="The bare question, or the full solve prompt (prompts.solve_prompt) given to the policy")
    response: str = Field(min_length=1, description="The policy's solution to verify")
    label: str | None = Field(default=None, description="Reference answer; accepted and ignored (no reference-guided mode)")
    task: str | None = Field(default=None, description="Task of this item; default: the request's task, then the server's")

    @field_validator("prompt", "response", "label", "task")
    @classmethod
    def _text(cls, v, info):
        return v if v is None else _utf8(v, info.field_name)


class RewardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[RewardItem] = Field(min_length=1)
    mode: Literal["direct", "cot"] = "direct"
    k: int | None = Field(default=None, ge=1, description="Rationales per item (cot); default from the server config")
    adaptive: bool | None = Field(default=None, description="Adaptive K (cot); default from the server config")
    return_rationales: bool = False
    task: str | None = None

    @field_validator("task")
    @classmethod
    def _task(cls, v):
        return v if v is None else _utf8(v, "task")


class ItemDetail(BaseModel):
    p_yes: list[float]
    k_used: int
    rationale_tokens: int
    unfinished: int
    rationales: list[str] | None = None


class Usage(BaseModel):
    items: int
    unique_items: int  # after in-request dedup
    cache_hits: int  # unique items answered from the cross-request cache
    scored: int  # unique items the engine scored
    dedup_hit_rate: float  # (items - unique_items) / items
    cache_hit_rate: float  # cache_hits / unique_items
    prompt_tokens: int  # verification prompt tokens of the scored items
    rationale_tokens: int


class RewardResponse(BaseModel):
    rewards: list[float]
    details: list[ItemDetail]
    model: str
    mode: str
    usage: Usage


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward model request (openrlhf/utils/remote_rm_utils.py: remote_rm_fn_ray posts
    {"query", "prompts", "labels"}); each query is its prompt followed by the response. Newer OpenRLHF
    versions add fields (metas, datasources, ...): they are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    query: list[str] = Field(min_length=1)
    prompts: list[str] = Field(min_length=1)
    labels: list[Any] | None = None

    @field_validator("query", "prompts")
    @classmethod
    def _texts(cls, v, info):
        return [_utf8(s, f"{info.field_name}[{i}]") for i, s in enumerate(v)]


class OpenRLHFResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


class ModelCard(BaseModel):
    id: str
    checkpoint: str
    task: str
    tasks: list[str]
    modes: list[str]
    max_k: int
    max_items: int
    max_model_len: int
    normalize: bool
