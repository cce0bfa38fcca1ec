"""GRPOConfig: every knob of a GRPO run (jobs/train_grpo.py), one dataclass tree (genrm_ray.config).

    cfg = load_grpo_config("configs/grpo/demo.yaml", ["reward.source=oracle", "train.steps=50"])

models.from_run can name a GenRM training run (jobs/train_genrm.py's run dir, genrm_ray.runs.RunDir): its
summary.json names the policy it was trained from (data.policy), its verifier export fills
models.verifier, and the task it recorded fills task.name. The default config names runs/demo, the run
`make demo` trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrm_ray.config import ConfigError, load_config
from genrm_ray.models.pretrained import BaseModelError, resolve_base_model
from genrm_ray.runs import RunDir, RunDirError, StorageError, as_location, is_file, is_uri, require_hf_model_dir
from genrm_ray.scoring import CotConfig, check_cot
from genrm_ray.tasks.config import TaskConfig, check_task
from genrm_ray.train.config import DeepSpeedConfig, LoggingConfig, check_deepspeed


@dataclass
class ModelsConfig:
    # A train_genrm run: fills policy (summary data.policy) and verifier (its export). A local or shared
    # path, or the URI of the run in its storage (s3://bucket/runs/<run>; genrm_ray.runs).
    from_run: str = ""
    policy: str = ""  # HF dir (local or shared path) of the SFT policy that GRPO starts from (also the frozen KL reference)
    verifier: str = ""  # the reward model's HF dir or its URI (genrm_* sources: GenRM; discriminative: classifier)


@dataclass
class RewardConfig:
    # A name in genrm_ray.rl.rewards.REWARD_SOURCES (the registry the RewardActor builds from), or a
    # module:Class whose keyword parameters are its options (genrm_ray.rl.rewards.source_options).
    source: str = "genrm_cot"
    # Where the GenRM is served (genrm_* sources), first match wins: url (an HTTP base URL; bearer token
    # from $GENRM_REWARD_TOKEN), app_name (a Serve app already running in this Ray cluster: handle
    # calls), else this job starts the app from serve_config over models.verifier and calls it by handle.
    url: str = ""
    app_name: str = ""
    serve_config: str = "configs/serve/cpu.yaml"  # the app this job starts for genrm_* sources
    serve_overrides: list[str] = field(default_factory=list)
    # genrm_cot voting. cot.k and cot.adaptive go with every request; an app this job starts votes
    # with this whole section (its scoring.cot); a server found by url / app_name keeps its own.
    cot: CotConfig = field(default_factory=lambda: CotConfig(k=4))
    batch_size: int = 64  # items per reward request
    retries: int = 3
    num_cpus: float = 0.25  # the reward actor (it holds the model for `discriminative`)


@dataclass
class RolloutConfig:
    prompts_per_step: int = 16
    group_size: int = 8  # G responses per prompt; advantages are normalized within each group
    temperature: float = 1.0
    max_tokens: int = 256  # response budget; cut responses count as unfinished (last-letter solutions run 160-220 tokens)
    chunks: int = 2  # rollouts go out in chunks so scoring of one overlaps generation of the next
    num_cpus: float = 0.5
    engine: dict[str, Any] = field(default_factory=dict)  # vLLM options (genrm_ray.engine.vllm_backend)


@dataclass
class PolicyTrainConfig:
    """The GRPO policy's optimization: what every PolicyWorker rank builds its DeepSpeed engine from."""

    steps: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 5
    clip_eps: float = 0.2
    kl_coef: float = 0.02  # 0 = no KL term and no reference model
    micro_batch_size: int = 32
    deepspeed: DeepSpeedConfig = field(default_factory=lambda: DeepSpeedConfig(zero_stage=2, bf16=False))
    num_workers: int = 1  # DeepSpeed ranks (data parallel)
    resources_per_worker: dict[str, float] = field(default_factory=lambda: {"CPU": 0.5})
    # torch threads of each policy rank and of the reference model; 0 = Ray's (one per whole CPU
    # reserved, at least one). The update phases run one after another (rollout, reward, log-probs,
    # step), so on a small CPU box the ranks can use every core their reservation does not cover.
    torch_threads: int = 0
    # How long the ranks' placement group, and then the other actors, may wait for room and start (an
    # autoscaler may be adding a node); then the job fails naming what did not start, releasing the rest.
    placement_timeout_s: float = 600.0
    seed: int = 0
    budget_minutes: float = 0.0  # stop after this much wall time (0 = no limit); the run's last step still saves


@dataclass
class PassAtOneConfig:
    every: int = 10  # steps between held-out pass@1 measurements (and at step 0 and the end)
    temperature: float = 0.0  # 0 = greedy
    samples: int = 1  # per held-out prompt; pass@1 = mean correctness


@dataclass
class RefreshConfig:
    """Verifier refresh (genrm_ray.rl.refresh): every ``every`` steps the rollouts since the last refresh,
    graded by the task's grader, train the served GenRM for ``steps`` optimizer steps, and its replicas
    load the new weights in place. genrm_* sources whose app this job starts only."""

    every: int = 0  # GRPO steps between refreshes; 0 = off
    steps: int = 4  # verifier optimizer steps per refresh
    micro_batch_size: int = 8
    lr: float = 1e-5
    max_examples: int = 64  # balanced Yes/No examples per refresh, from the newest rollouts
    max_length: int = 768  # tokens per example (prompt + target); a longer one is left out
    deepspeed: DeepSpeedConfig = field(default_factory=lambda: DeepSpeedConfig(zero_stage=2))
    num_cpus: float = 0.25  # the trainer actor
    seed: int = 0


@dataclass
class GRPOConfig:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    # n_train: the prompts GRPO samples from; n_heldout: the held-out prompts of its pass@1 ("" name = the
    # task of models.from_run)
    task: TaskConfig = field(default_factory=lambda: TaskConfig(n_train=2000, n_heldout=200))
    reward: RewardConfig = field(default_factory=RewardConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: PolicyTrainConfig = field(default_factory=PolicyTrainConfig)
    eval: PassAtOneConfig = field(default_factory=PassAtOneConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint_every: int = 20  # steps; the last step always saves; a rerun in the same run_dir resumes
    run_dir: str = ""  # "" = runs/grpo-<reward source>
    # Where the policy's checkpoints, its HF export and summary.json go: "" = run_dir; a shared path
    # (the mount every node has) = <storage>/<run_dir's name>/. The policy ranks write there directly.
    storage: str = ""
    ray_address: str = ""  # "" = $RAY_ADDRESS if set, else a local Ray


def load_grpo_config(path: str | Path | None, overrides: Sequence[str] = ()) -> GRPOConfig:
    """Load, fill models.* from models.from_run, and check everything checkable without Ray."""
    cfg = load_config(GRPOConfig, path, overrides)
    try:
        check_grpo_config(cfg)
    except (RunDirError, BaseModelError, StorageError) as e:
        raise ConfigError(str(e)) from None
    return cfg


def check_grpo_config(cfg: GRPOConfig) -> None:
    """Everything checkable without Ray (fills models.* from models.from_run and resolves models.policy
    to an HF dir, converting a GGUF once: that check, which loads a tokenizer and imports vLLM, runs
    last); ConfigError, RunDirError or BaseModelError naming the key. jobs/train_grpo.py passes it to
    genrm_ray.launch.load."""
    from genrm_ray.rl.rewards import option_names

    try:
        option_names(cfg.reward.source)  # a registered name, or an importable module:Class
    except ValueError as e:
        raise ConfigError(f"reward.source: {e}") from None
    m = cfg.models
    if is_uri(cfg.storage):
        raise ConfigError(f"storage: GRPO's policy ranks write their checkpoints through a mounted path; give the "
                          f"shared mount (e.g. /mnt/shared/runs), not {cfg.storage}")
    if is_uri(m.policy):
        raise ConfigError(f"models.policy: every policy rank and the rollout engine load it from a path; give the "
                          f"shared mount's path, not {m.policy}")
    if m.from_run:
        run = RunDir(as_location(m.from_run))
        if not is_file(run.summary_file):
            raise ConfigError(f"models.from_run: {run.summary_file} not found; train the verifier first with "
                              "jobs/train_genrm.py (`make demo` trains runs/demo), or set models.policy and models.verifier")
        m.policy = m.policy or str(run.policy() or "")
        m.verifier = m.verifier or str(run.hf_model() or "")
        if not cfg.task.name:  # the run's task, with the generator settings it trained on
            cfg.task.name = run.task() or ""
            cfg.task.options = cfg.task.options or run.task_options()
    if not cfg.task.name:
        raise ConfigError("task.name is required (or models.from_run naming a run dir that records its task)")
    if not m.policy:
        raise ConfigError("models.policy is required (or models.from_run naming a train_genrm run dir)")
    served_elsewhere = bool(cfg.reward.url or cfg.reward.app_name)
    if cfg.reward.source == "discriminative" or (cfg.reward.source.startswith("genrm") and not served_elsewhere):
        if not m.verifier:
            raise ConfigError(f"reward.source={cfg.reward.source} needs models.verifier (or reward.url of a running endpoint)")
        verifier = require_hf_model_dir(as_location(m.verifier), "models.verifier")
        m.verifier = str(verifier if is_uri(verifier) else Path(verifier).resolve())
    r, t = cfg.rollout, cfg.train
    for key, value, low in [("rollout.prompts_per_step", r.prompts_per_step, 1), ("rollout.group_size", r.group_size, 2),
                            ("rollout.max_tokens", r.max_tokens, 1), ("rollout.chunks", r.chunks, 1),
                            ("train.steps", t.steps, 1), ("train.num_workers", t.num_workers, 1),
                            ("train.micro_batch_size", t.micro_batch_size, 1), ("train.warmup_steps", t.warmup_steps, 0),
                            ("train.torch_threads", t.torch_threads, 0),
                            ("eval.every", cfg.eval.every, 1), ("eval.samples", cfg.eval.samples, 1),
                            ("task.n_train", cfg.task.n_train, 1), ("task.n_heldout", cfg.task.n_heldout, 1)]:
        if value < low:
            raise ConfigError(f"{key} must be >= {low}, got {value}")
    if r.prompts_per_step % r.chunks:
        raise ConfigError(f"rollout.prompts_per_step={r.prompts_per_step} must be a multiple of rollout.chunks={r.chunks}")
    check_deepspeed(t.deepspeed, "train.deepspeed")
    if t.placement_timeout_s <= 0:
        raise ConfigError(f"train.placement_timeout_s must be > 0, got {t.placement_timeout_s}")
    if t.lr <= 0 or t.clip_eps <= 0 or t.kl_coef < 0:
        raise ConfigError(f"train.lr > 0, train.clip_eps > 0 and train.kl_coef >= 0, got {t.lr}, {t.clip_eps}, {t.kl_coef}")
    check_cot(cfg.reward.cot, "reward.cot")
    if served_elsewhere:
        kept = dataclasses.replace(cfg.reward.cot, k=CotConfig.k, adaptive=CotConfig.adaptive)
        if kept != CotConfig():
            changed = [f.name for f in dataclasses.fields(CotConfig) if getattr(kept, f.name) != getattr(CotConfig(), f.name)]
            raise ConfigError(f"reward.cot.{changed[0]}: a server found by reward.url / reward.app_name votes with its own "
                              "scoring.cot; only reward.cot.k and reward.cot.adaptive go with a request")
    if any(o.startswith("scoring.cot") for o in cfg.reward.serve_overrides):
        raise ConfigError("reward.serve_overrides: the app this job starts votes with reward.cot; set reward.cot.* instead "
                          "of scoring.cot.*")
    check_refresh(cfg, served_elsewhere)
    check_task(cfg.task, "task")
    if cfg.reward.source.startswith("genrm") and not served_elsewhere:
        serve_config(cfg)  # the app's config fails now, not after the actors start
    m.policy = str(resolve_base_model(m.policy, "models.policy", vllm=True).resolve())


def check_refresh(cfg: GRPOConfig, served_elsewhere: bool) -> None:
    f = cfg.refresh
    if f.every < 0:
        raise ConfigError(f"refresh.every must be >= 0 (0 = no refresh), got {f.every}")
    if f.every == 0:
        return
    if not cfg.reward.source.startswith("genrm") or served_elsewhere:
        raise ConfigError(f"refresh.every={f.every}: the verifier refresh trains the GenRM this job serves; it needs "
                          "reward.source genrm_cot or genrm_direct without reward.url / reward.app_name "
                          f"(got source {cfg.reward.source!r})")
    for key, value, low in [("refresh.steps", f.steps, 1), ("refresh.micro_batch_size", f.micro_batch_size, 1),
                            ("refresh.max_examples", f.max_examples, 2), ("refresh.max_length", f.max_length, 8)]:
        if value < low:
            raise ConfigError(f"{key} must be >= {low}, got {value}")
    if f.lr <= 0:
        raise ConfigError(f"refresh.lr must be > 0, got {f.lr}")
    check_deepspeed(f.deepspeed, "refresh.deepspeed")


def serve_config(cfg: GRPOConfig):
    """The config of the reward app this job starts (genrm_* sources without url / app_name): serve_config
    over models.verifier, voting with reward.cot."""
    from genrm_ray.serving.config import check_serve_config, load_serve_config

    if not Path(cfg.reward.serve_config).is_file():
        raise ConfigError(f"reward.serve_config: no such file {cfg.reward.serve_config}")
    serve = load_serve_config(cfg.reward.serve_config, [f"checkpoint={cfg.models.verifier}", f"scoring.task={cfg.task.name}",
                                                        *cfg.reward.serve_overrides])
    serve.scoring.cot = dataclasses.replace(cfg.reward.cot)
    if cfg.refresh.every > 0:  # the replicas follow the refreshed verifier's weights
        from genrm_ray.rl.refresh import NAMESPACE, trainer_name

        serve.reload.actor, serve.reload.namespace = trainer_name(serve.http.app_name), NAMESPACE
    check_serve_config(serve)
    return serve
