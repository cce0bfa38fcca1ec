"""The reward server's config: one YAML file (``configs/serve/*.yaml``) + ``key=value`` overrides.

    cfg = load_serve_config("configs/serve/cpu.yaml", ["checkpoint=runs/demo", "deployment.max_replicas=4"])

Every path and engine option comes from here (the operator), never from a request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genrm_ray.config import ConfigError, load_config
from genrm_ray.runs import RunDir, RunDirError, StorageError, as_location, is_uri, local_model_dir, resolve_model_dir
from genrm_ray.scoring import CotConfig, check_cot, voting_temperature_problem

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    """vLLM engine options of each replica (see genrm_ray.engine.vllm_backend.engine_kwargs)."""

    dtype: str | None = None  # None: bfloat16, or float32 on a CPU without bf16 instructions (engine_kwargs)
    max_model_len: int = 2048
    enforce_eager: bool | None = None  # None: True on CPU (fast load), False on GPU (CUDA graphs)
    seed: int = 0
    tensor_parallel_size: int = 1
    trust_remote_code: bool = False  # only a checkpoint the operator trusts; off by default
    extra: dict[str, Any] = field(default_factory=dict)  # passed to vLLM unchanged (gpu_memory_utilization, ...)


@dataclass
class ScoringConfig:
    # Task of every item unless a request names another. "" = the task the checkpoint's run recorded
    # (genrm_ray.runs.RunDir.task): a verifier is served under the task it was trained on.
    task: str = ""
    normalize: bool = False  # p(Yes)/(p(Yes)+p(No)) instead of the paper's raw p(Yes)
    # The injection defence (prompts.neutralize_solution). false only to measure what it buys (docs/rl.md).
    neutralize: bool = True
    # GenRM-CoT voting. cot.k and cot.adaptive are the defaults of a request that names no k / adaptive;
    # every other field applies to every CoT request.
    cot: CotConfig = field(default_factory=CotConfig)
    max_k: int = 32  # the largest k a request may ask for
    max_items: int = 256  # items per request
    get_reward_mode: Literal["direct", "cot"] = "direct"  # /get_reward (OpenRLHF) cannot choose; k = cot.k
    dedup: bool = True  # score identical (task, prompt, response) once per request
    cache_size: int = 0  # LRU entries across requests; 0 turns the cache off


@dataclass
class DeploymentConfig:
    name: str = "GenRMReward"
    accelerator: Literal["cpu", "gpu"] = "cpu"
    num_cpus: float = 1.0  # per replica (vLLM's engine processes run outside Ray's CPU accounting)
    # Custom Ray resources per replica, e.g. {serve_node: 1} to keep replicas on the nodes that advertise it.
    resources: dict[str, float] = field(default_factory=dict)
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
class HTTPConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    app_name: str = "genrm"
    route_prefix: str = "/"
    # Bearer token: taken from this environment variable at deploy time (keeps the secret out of
    # config files); `auth_token` in the config is accepted too. Both empty: no auth.
    auth_token_env: str = "GENRM_SERVE_TOKEN"
    auth_token: str = ""


@dataclass
class ReloadConfig:
    # A named Ray actor whose weights the replicas follow: the GRPO job's verifier trainer
    # (actors.verifier_actor.VerifierActor, train_grpo refresh.*). Before each request a replica asks
    # it for its weights version and, when newer, loads its weights in place (no restart) and clears
    # its reward cache. "" = the replicas serve `checkpoint` as it is.
    actor: str = ""
    namespace: str = "genrm"


@dataclass
class ServeConfig:
    # The GenRM: its HF export, or the training run that holds it (runs/<run>: genrm/hf_model), as a
    # local or shared path or a URI of the run's storage (s3://bucket/runs/<run>); each replica loads a
    # URI's export from a copy in its own node's cache (genrm_ray.runs.local_model_dir).
    checkpoint: str = ""
    model_name: str = ""  # reported by /v1/models and responses; default: the run's (or export's) folder name
    engine: EngineConfig = field(default_factory=EngineConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    reload: ReloadConfig = field(default_factory=ReloadConfig)


def load_serve_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ServeConfig:
    """Load and check a serve config; scoring.task defaults to the checkpoint's run's task, and the checkpoint
    path becomes absolute (replicas run elsewhere)."""
    cfg = load_config(ServeConfig, path, overrides)
    if cfg.checkpoint:
        recorded = RunDir.holding(cfg.checkpoint).task()
        if not cfg.scoring.task:
            cfg.scoring.task = recorded or ""
        elif recorded and recorded != cfg.scoring.task:
            log.warning("scoring.task=%s, but %s was trained on %s: requests without a task are scored as %s",
                        cfg.scoring.task, cfg.checkpoint, recorded, cfg.scoring.task)
    check_serve_config(cfg)
    named = as_location(cfg.checkpoint)
    export = resolve_model_dir(named, "checkpoint")
    cfg.checkpoint = str(export if is_uri(export) else Path(export).resolve())
    cfg.model_name = cfg.model_name or _folder_name(named if str(named) != cfg.checkpoint else cfg.checkpoint)
    return cfg


def _folder_name(location) -> str:
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def model_dir(cfg: ServeConfig) -> Path:
    """The folder a replica loads: the checkpoint itself, or this node's copy of a URI's export."""
    return local_model_dir(cfg.checkpoint, "checkpoint")


def check_serve_config(cfg: ServeConfig) -> None:
    """Everything checkable before Ray starts; ConfigError names the key."""
    from genrm_ray.tasks import TASKS

    if not cfg.checkpoint:
        raise ConfigError("checkpoint: not set (pass --checkpoint DIR or checkpoint=DIR)")
    try:
        resolve_model_dir(as_location(cfg.checkpoint), "checkpoint")
    except (RunDirError, StorageError) as e:
        raise ConfigError(str(e)) from None
    s, d = cfg.scoring, cfg.deployment
    if not s.task:
        raise ConfigError(f"scoring.task: not set, and {cfg.checkpoint} is not in a run dir that records its task "
                          "(job_config.json / grpo_config.json); set scoring.task=NAME")
    if s.task not in TASKS:
        raise ConfigError(f"scoring.task: unknown task {s.task!r}; known: {sorted(TASKS)}")
    for key, value, low in [("scoring.max_k", s.max_k, 1), ("scoring.max_items", s.max_items, 1),
                            ("scoring.cache_size", s.cache_size, 0), ("deployment.min_replicas", d.min_replicas, 0),
                            ("deployment.max_ongoing_requests", d.max_ongoing_requests, 1),
                            ("engine.tensor_parallel_size", cfg.engine.tensor_parallel_size, 1),
                            ("engine.max_model_len", cfg.engine.max_model_len, 8)]:
        if value < low:
            raise ConfigError(f"{key}: must be >= {low}, got {value}")
    if not 1 <= s.cot.k <= s.max_k:
        raise ConfigError(f"scoring.cot.k: must be between 1 and scoring.max_k={s.max_k}, got {s.cot.k}")
    if problem := voting_temperature_problem(s.cot.temperature, s.max_k):
        raise ConfigError(f"scoring.cot.temperature: requests may ask for up to scoring.max_k={s.max_k} rationales: {problem}")
    check_cot(s.cot, "scoring.cot")
    if d.max_replicas < max(d.min_replicas, 1):
        raise ConfigError(f"deployment.max_replicas: must be >= max(1, min_replicas={d.min_replicas}), got {d.max_replicas}")
    if cfg.engine.tensor_parallel_size > 1 and d.accelerator != "gpu":
        raise ConfigError("engine.tensor_parallel_size > 1 needs deployment.accelerator=gpu")


def auth_token(cfg: ServeConfig) -> str | None:
    """The bearer token replicas require, or None (no auth)."""
    env = os.environ.get(cfg.http.auth_token_env, "") if cfg.http.auth_token_env else ""
    return env or cfg.http.auth_token or None


def engine_options(cfg: ServeConfig) -> dict[str, Any]:
    """AsyncVLLMBackend options from the config (trust_remote_code only when configured)."""
    e = cfg.engine
    options = dict(dtype=e.dtype, max_model_len=e.max_model_len, seed=e.seed, enforce_eager=e.enforce_eager, **e.extra)
    if e.trust_remote_code:
        options["trust_remote_code"] = True
    if e.tensor_parallel_size > 1:
        # Workers go into this replica's placement group (bundles below), one GPU each.
        options.update(tensor_parallel_size=e.tensor_parallel_size, distributed_executor_backend="ray")
    if cfg.reload.actor:
        from genrm_ray.engine.weight_sync import with_extension

        options = with_extension(options, "reload.actor")  # in-place weight loading
    return options


def deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """``serve.deployment(...)`` options: autoscaling, request limits, replica resources."""
    d, tp = cfg.deployment, cfg.engine.tensor_parallel_size
    options: dict[str, Any] = dict(
        name=d.name,
        max_ongoing_requests=d.max_ongoing_requests,
        max_queued_requests=d.max_queued_requests,
        autoscaling_config=dict(min_replicas=d.min_replicas, max_replicas=d.max_replicas,
                                initial_replicas=d.initial_replicas, target_ongoing_requests=d.target_ongoing_requests,
                                upscale_delay_s=d.upscale_delay_s, downscale_delay_s=d.downscale_delay_s,
                                look_back_period_s=d.look_back_period_s),
        health_check_period_s=d.health_check_period_s,
        graceful_shutdown_wait_loop_s=d.graceful_shutdown_wait_loop_s,
        graceful_shutdown_timeout_s=d.graceful_shutdown_timeout_s,
    )
    if d.accelerator == "cpu":
        options["ray_actor_options"] = {"num_cpus": d.num_cpus}
    elif tp == 1:
        options["ray_actor_options"] = {"num_cpus": d.num_cpus, "num_gpus": 1}
    else:
        # The replica actor takes the CPU bundle; vLLM's tensor-parallel workers take one GPU bundle
        # each, packed onto one node.
        options["ray_actor_options"] = {"num_cpus": d.num_cpus, "num_gpus": 0}
        options["placement_group_bundles"] = [{"CPU": d.num_cpus}] + [{"GPU": 1}] * tp
        options["placement_group_strategy"] = "STRICT_PACK"
        if d.resources:
            options["placement_group_bundles"][0].update(d.resources)
    if d.resources:
        options["ray_actor_options"]["resources"] = dict(d.resources)
    return options
