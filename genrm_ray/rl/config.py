"""GRPOConfig: every knob of a GRPO run (jobs/train_grpo.py), one dataclass tree (genrm_ray.config).

    cfg = load_grpo_config("configs/grpo_last_letter_cpu.yaml", ["reward.source=oracle", "train.steps=50"])

Paths can name a GenRM training run (jobs/train_genrm.py's run dir): its summary.json names the
policy it was trained from (data.policy) and the verifier it exported (hf_model), so the embedded
default starts from what `make demo` produced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from genrm_ray.config import ConfigError, load_config

REWARD_SOURCES = ("genrm_cot", "genrm_direct", "discriminative", "oracle")


@dataclass
class ModelsSection:
    from_run: str = ""  # a train_genrm run dir: fills policy (summary data.policy) and verifier (hf_model)
    policy: str = ""  # HF dir of the SFT policy that GRPO starts from (also the frozen KL reference)
    verifier: str = ""  # HF dir of the reward model (genrm_* sources: GenRM; discriminative: classifier)


@dataclass
class TaskSection:
    name: str = "last_letter"
    n_train: int = 2000  # train-split prompts GRPO samples from
    n_eval: int = 200  # held-out prompts for pass@1
    eval_split: str = "validation"  # never "test": the test split stays for Best-of-N
    seed: int = 0


@dataclass
class RewardSection:
    source: Literal["genrm_cot", "genrm_direct", "discriminative", "oracle"] = "genrm_cot"
    # Where the GenRM is served (genrm_* sources), first match wins: url (an HTTP base URL; bearer token
    # from $GENRM_REWARD_TOKEN), app_name (a Serve app already running in this Ray cluster: handle
    # calls), else this job starts the app from serve_config over models.verifier and calls it by handle.
    url: str = ""
    app_name: str = ""
    serve_config: str = "configs/serve_cpu.yaml"  # the app this job starts for genrm_* sources
    serve_overrides: list[str] = field(default_factory=list)
    k: int = 4  # rationales per (prompt, response) for genrm_cot
    adaptive: bool = False
    batch_size: int = 64  # items per reward request
    retries: int = 3
    num_cpus: float = 0.25  # the reward actor (it holds the model for `discriminative`)


@dataclass
class RolloutSection:
    prompts_per_step: int = 16
    group_size: int = 8  # G responses per prompt; advantages are normalized within each group
    temperature: float = 1.0
    max_tokens: int = 160  # byte-level tokenizer: a 4-word last-letter solution is ~140 tokens
    chunks: int = 2  # rollouts go out in chunks so scoring of one overlaps generation of the next
    num_cpus: float = 0.5
    engine: dict[str, Any] = field(default_factory=dict)  # vLLM options (genrm_ray.engine.vllm_backend)


@dataclass
class TrainSection:
    steps: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 5
    clip_eps: float = 0.2
    kl_coef: float = 0.02  # 0 = no KL term and no reference model
    micro_batch_size: int = 32
    zero_stage: int = 2
    bf16: bool = False
    grad_clip: float = 1.0
    num_workers: int = 1  # DeepSpeed ranks (data parallel)
    resources_per_worker: dict[str, float] = field(default_factory=lambda: {"CPU": 0.5})
    seed: int = 0
    budget_minutes: float = 0.0  # stop after this much wall time (0 = no limit); the run's last step still saves


@dataclass
class EvalSection:
    every: int = 10  # steps between held-out pass@1 measurements (and at step 0 and the end)
    temperature: float = 0.0  # 0 = greedy
    samples: int = 1  # per held-out prompt; pass@1 = mean correctness


@dataclass
class LoggingSection:
    wandb_project: str | None = None  # None -> $WANDB_PROJECT or "genrm-ray"; mode offline by default
    wandb_mode: Literal["offline", "online", "disabled"] | None = None


@dataclass
class GRPOConfig:
    models: ModelsSection = field(default_factory=ModelsSection)
    task: TaskSection = field(default_factory=TaskSection)
    reward: RewardSection = field(default_factory=RewardSection)
    rollout: RolloutSection = field(default_factory=RolloutSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    checkpoint_every: int = 20  # steps; the last step always saves; a rerun in the same run_dir resumes
    run_dir: str = ""  # "" = runs/grpo-<reward source>
    ray_address: str = ""  # "" = $RAY_ADDRESS if set, else a local Ray


def _hf_dir(path: str, key: str) -> str:
    if not (Path(path) / "config.json").is_file():
        raise ConfigError(f"{key}: {path} is not a Hugging Face model dir (no config.json)")
    return str(Path(path).resolve())


def load_grpo_config(path: str | Path | None, overrides: Sequence[str] = ()) -> GRPOConfig:
    """Load, fill models.* from models.from_run, and check everything checkable without Ray."""
    cfg = load_config(GRPOConfig, path, overrides)
    m = cfg.models
    if m.from_run:
        summary = Path(m.from_run) / "summary.json"
        if not summary.is_file():
            raise ConfigError(f"models.from_run: {summary} not found; train the verifier first with jobs/train_genrm.py "
                              "(the command is in the header of configs/grpo_last_letter_cpu.yaml), or set "
                              "models.policy and models.verifier")
        s = json.loads(summary.read_text())
        m.policy = m.policy or s.get("data", {}).get("policy", "")
        m.verifier = m.verifier or s.get("hf_model", "")
    if not m.policy:
        raise ConfigError("models.policy is required (or models.from_run naming a train_genrm run dir)")
    m.policy = _hf_dir(m.policy, "models.policy")
    served_elsewhere = bool(cfg.reward.url or cfg.reward.app_name)
    if cfg.reward.source == "discriminative" or (cfg.reward.source.startswith("genrm") and not served_elsewhere):
        if not m.verifier:
            raise ConfigError(f"reward.source={cfg.reward.source} needs models.verifier (or reward.url of a running endpoint)")
        m.verifier = _hf_dir(m.verifier, "models.verifier")
    r, t = cfg.rollout, cfg.train
    for key, value, low in [("rollout.prompts_per_step", r.prompts_per_step, 1), ("rollout.group_size", r.group_size, 2),
                            ("rollout.max_tokens", r.max_tokens, 1), ("rollout.chunks", r.chunks, 1),
                            ("train.steps", t.steps, 1), ("train.num_workers", t.num_workers, 1),
                            ("train.micro_batch_size", t.micro_batch_size, 1), ("reward.k", cfg.reward.k, 1),
                            ("eval.every", cfg.eval.every, 1), ("eval.samples", cfg.eval.samples, 1),
                            ("task.n_train", cfg.task.n_train, 1), ("task.n_eval", cfg.task.n_eval, 1)]:
        if value < low:
            raise ConfigError(f"{key} must be >= {low}, got {value}")
    if r.prompts_per_step % r.chunks:
        raise ConfigError(f"rollout.prompts_per_step={r.prompts_per_step} must be a multiple of rollout.chunks={r.chunks}")
    if t.zero_stage not in (2, 3):
        raise ConfigError(f"train.zero_stage must be 2 or 3, got {t.zero_stage}")
    if t.kl_coef < 0:
        raise ConfigError(f"train.kl_coef must be >= 0, got {t.kl_coef}")
    if cfg.task.eval_split == "test":
        raise ConfigError("task.eval_split=test is reserved for Best-of-N; use validation (or ood)")
    from genrm_ray.tasks import get_task

    task = get_task(cfg.task.name)
    if cfg.task.eval_split not in task.splits():
        raise ConfigError(f"task.eval_split: task {task.name!r} has no split {cfg.task.eval_split!r} ({list(task.splits())})")
    if cfg.reward.source.startswith("genrm") and not served_elsewhere:
        from genrm_ray.serving.config import load_serve_config

        if not Path(cfg.reward.serve_config).is_file():
            raise ConfigError(f"reward.serve_config: no such file {cfg.reward.serve_config}")
        load_serve_config(cfg.reward.serve_config, [f"checkpoint={m.verifier}", *cfg.reward.serve_overrides])
    return cfg
