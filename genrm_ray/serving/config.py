"""The reward server's config: one YAML file (``configs/serve_*.yaml``) + ``key=value`` overrides.

    cfg = load_serve_config("configs/serve_cpu.yaml", ["checkpoint=runs/x/genrm", "deployment.max_replicas=4"])

Every path and engine option comes from here (the operator), never from a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from genrm_ray.config import ConfigError, load_config


@dataclass
class EngineOptions:
    """vLLM engine options of each replica (see genrm_ray.engine.vllm_backend.engine_kwargs)."""

    dtype: str = "bfloat16"
    max_model_len: int = 2048
    enforce_eager: bool | None = None  # None: True on CPU (fast load), False on GPU (CUDA graphs)
    seed: int = 0
    tensor_parallel_size: int = 1
    trust_remote_code: bool = False  # only a checkpoint the operator trusts; off by default
    extra: dict[str, Any] = field(default_factory=dict)  # passed to vLLM unchanged (gpu_memory_utilization, ...)


@dataclass
class ScoringOptions:
    task: str = "last_letter"  # task of every item unless a request names another
    normalize: bool = False  # p(Yes)/(p(Yes)+p(No)) instead of the paper's raw p(Yes)
    default_k: int = 8
    max_k: int = 32
    max_items: int = 256  # items per request
    max_rationale_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    unfinished_p_yes: float = 0.0
    min_k: int = 2  # adaptive K: see genrm_ray.scoring
    round_size: int = 2
    tolerance: float = 0.1
    seed: int | None = None  # fixed CoT sampling seed (reproducible rewards); None: fresh samples
    get_reward_mode: Literal["direct", "cot"] = "direct"  # /get_reward (OpenRLHF) cannot choose; k = default_k
    dedup: bool = True  # score identical (task, prompt, response) once per request
    cache_size: int = 0  # LRU entries across requests; 0 turns the cache off


@dataclass
class DeploymentOptions:
    name: str = "GenRMReward"
    accelerator: Literal["cpu", "gpu"] = "cpu"
    num_cpus: float = 1.0  # per replica (vLLM's engine processes run outside Ray's CPU accounting)
    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: int | None = None
    target_ongoing_requests: float = 4.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 30.0
    # Requests a replica accepts at once: enough to keep the engine's continuous batch full, few
    # enough that excess load queues at the proxy (where autoscaling sees it) instead of in a replica.
    max_ongoing_requests: int = 16
    max_queued_requests: int = -1  # -1: unbounded queue at the proxy/handle
    health_check_period_s: float = 10.0
    graceful_shutdown_wait_loop_s: float = 2.0
    graceful_shutdown_timeout_s: float = 30.0


@dataclass
class HTTPOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    app_name: str = "genrm"
    route_prefix: str = "/"
    # Bearer token: taken from this environment variable at deploy time (keeps the secret out of
    # config files); `auth_token` in the config is accepted too. Both empty: no auth.
    auth_token_env: str = "GENRM_SERVE_TOKEN"
    auth_token: str = ""


@dataclass
class ServeConfig:
    checkpoint: str = ""  # the GenRM checkpoint dir (HF format, the training job's export)
    model_name: str = ""  # reported by /v1/models and responses; default: the checkpoint dir's name
    engine: EngineOptions = field(default_factory=EngineOptions)
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    deployment: DeploymentOptions = field(default_factory=DeploymentOptions)
    http: HTTPOptions = field(default_factory=HTTPOptions)


def load_serve_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ServeConfig:
    """Load and check a serve config; the checkpoint path becomes absolute (replicas run elsewhere)."""
    cfg = load_config(ServeConfig, path, overrides)
    check_serve_config(cfg)
    cfg.checkpoint = str(Path(cfg.checkpoint).resolve())
    cfg.model_name = cfg.model_name or Path(cfg.checkpoint).name
    return cfg


def check_serve_config(cfg: ServeConfig) -> None:
    """Everything checkable before Ray starts; ConfigError names the key."""
    from genrm_ray.scoring import voting_temperature_problem
    from genrm_ray.tasks import TASKS

    if not cfg.checkpoint:
        raise ConfigError("checkpoint: not set (pass --checkpoint DIR or checkpoint=DIR)")
    if not (Path(cfg.checkpoint) / "config.json").is_file():
        raise ConfigError(f"checkpoint: {cfg.checkpoint} is not a Hugging Face model dir (no config.json)")
    s, d = cfg.scoring, cfg.deployment
    if s.task not in TASKS:
        raise ConfigError(f"scoring.task: unknown task {s.task!r}; known: {sorted(TASKS)}")
    for key, value, low in [("scoring.max_k", s.max_k, 1), ("scoring.max_items", s.max_items, 1),
                            ("scoring.max_rationale_tokens", s.max_rationale_tokens, 1),
                            ("scoring.cache_size", s.cache_size, 0), ("deployment.min_replicas", d.min_replicas, 0),
                            ("deployment.max_ongoing_requests", d.max_ongoing_requests, 1),
                            ("engine.tensor_parallel_size", cfg.engine.tensor_parallel_size, 1),
                            ("engine.max_model_len", cfg.engine.max_model_len, 8)]:
        if value < low:
            raise ConfigError(f"{key}: must be >= {low}, got {value}")
    if not 1 <= s.default_k <= s.max_k:
        raise ConfigError(f"scoring.default_k: must be between 1 and scoring.max_k={s.max_k}, got {s.default_k}")
    if problem := voting_temperature_problem(s.temperature, s.max_k):
        raise ConfigError(f"scoring.temperature: requests may ask for up to scoring.max_k={s.max_k} rationales: {problem}")
    if d.max_replicas < max(d.min_replicas, 1):
        raise ConfigError(f"deployment.max_replicas: must be >= max(1, min_replicas={d.min_replicas}), got {d.max_replicas}")
    if cfg.engine.tensor_parallel_size > 1 and d.accelerator != "gpu":
        raise ConfigError("engine.tensor_parallel_size > 1 needs deployment.accelerator=gpu")


def auth_token(cfg: ServeConfig) -> str | None:
    """The bearer token replicas require, or None (no auth)."""
    env = os.environ.get(cfg.http.auth_token_env, "") if cfg.http.auth_token_env else ""
    return env or cfg.http.auth_token or None
