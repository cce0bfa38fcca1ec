"""TrainConfig: every knob of a training run, one dataclass tree (load with genrm_ray.config), and the
checks that need neither Ray nor a model (``check_train_config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ModelConfig:
    path: str = ""  # HF-format model dir with its tokenizer (e.g. from genrm_ray.models.tiny.create_tiny_model)
    gradient_checkpointing: bool = False
    # Decoder layers kept frozen at the bottom, with the token embeddings (and so a tied output head):
    # the backward pass then stops at the first trained layer. 0 = full fine-tuning. On the 2-core CPU,
    # SmolLM2-135M (30 layers) trained at 86 / 200 / 287 tokens/s with 0 / 15 / 24 frozen (fp32).
    freeze_bottom_layers: int = 0


@dataclass
class DataConfig:
    # JSONL files written by genrm_ray.data.sft; "" = not given. Which ones a run reads depends on
    # the objective: genrm -> verify_{mode} (+ correct if lambda_correct > 0), policy -> correct,
    # discriminative -> verify_direct (prompt + label).
    verify_direct: str = ""
    verify_cot: str = ""
    correct: str = ""
    max_length: int = 1024  # tokens; a longer example is an error naming its file:line (no truncation)
    # D_verify size: a seeded subset of at most this many examples, half Yes and half No (0 = all).
    # At a fixed step budget it trades distinct examples for epochs (the D_verify-size lever).
    max_verify_examples: int = 0


@dataclass
class ObjectiveConfig:
    name: Literal["genrm", "policy", "discriminative"] = "genrm"
    mode: Literal["direct", "cot"] = "direct"  # genrm: which verification set is D_verify
    lambda_correct: float = 1.0  # genrm: L = L_SFT(D_verify) + lambda * L_SFT(D_correct); 0 allowed


@dataclass
class TrainHParams:
    max_steps: int = 100  # optimizer steps
    micro_batch_size: int = 8  # sequences per worker per micro-step (per set for genrm)
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    seed: int = 0
    checkpoint_every: int = 50  # steps; the last step always checkpoints
    # Fault injection for the resume test: worker rank 1 exits at the start of this step when the run
    # did not start from a checkpoint (so only the first attempt dies). 0 = off.
    fail_at_step: int = 0


@dataclass
class DeepSpeedConfig:
    """DeepSpeed ZeRO settings of every DeepSpeed engine: GenRM / policy training and the GRPO policy."""

    zero_stage: Literal[2, 3] = 2  # the loader rejects any other stage, naming the key
    offload_optimizer: bool = False  # optimizer state on CPU (ZeRO-Offload)
    offload_param: bool = False  # parameters on CPU (ZeRO-3 only)
    # bf16 compute with fp32 master weights (DeepSpeed's bf16 mode); False = fp32. None = bf16 where
    # the hardware runs it fast: GPUs, and CPUs with AVX512-BF16 / AMX (genrm_ray.env.cpu_has_fast_bf16).
    bf16: bool | None = None
    gradient_clipping: float = 1.0
    # DeepSpeed's own per-step timings (forward, backward, gradient reduction, optimizer step; ms),
    # printed by rank 0 into its worker log (worker_0.log) each step: where a slow step's time goes.
    wall_clock_breakdown: bool = False


@dataclass
class ScalingConfig:
    num_workers: int = 2
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = field(default_factory=lambda: {"CPU": 1.0})
    max_failures: int = 1  # Ray Train restarts from the last checkpoint this many times


@dataclass
class LoggingConfig:
    # None -> WANDB_PROJECT / WANDB_ENTITY / WANDB_MODE from the environment, mode "offline" by default
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_mode: Literal["offline", "online", "disabled"] | None = None
    progress_bar: bool = True  # tqdm on rank 0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainHParams = field(default_factory=TrainHParams)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    output_dir: str = "runs/train"  # run dir: checkpoints, metrics.jsonl, wandb, hf_model
    # Where checkpoints, hf_model and metrics.jsonl go when they must outlive this node: a shared path
    # or a URI (s3://, gs://; genrm_ray.runs). "" = output_dir. Set, the workers keep their logs and
    # wandb files in their own node's temp dir and upload at the end; output_dir is the driver's.
    storage: str = ""


def resolve_bf16(ds: DeepSpeedConfig, on_gpu: bool, key: str = "deepspeed") -> bool:
    """bf16 on or off for this hardware: ``ds.bf16`` if set, else on for GPUs and fast-bf16 CPUs. An
    explicit bf16 on a CPU without bf16 instructions is kept (it is what a GPU run computes, and the
    tests check that path on tiny models) but warned about: there it runs many times slower."""
    import warnings

    from genrm_ray.env import cpu_has_fast_bf16

    if ds.bf16 is None:
        return on_gpu or cpu_has_fast_bf16()
    if ds.bf16 and not on_gpu and not cpu_has_fast_bf16():
        warnings.warn(f"{key}.bf16=true on a CPU without bf16 instructions (no avx512_bf16 / amx_bf16): bf16 "
                      f"matmuls run ~150x slower than fp32 here; {key}.bf16 null (auto) picks fp32", stacklevel=2)
    return ds.bf16


def check_deepspeed(ds: DeepSpeedConfig, key: str = "deepspeed") -> None:
    """Combinations ZeRO cannot run; the one home of the ZeRO rules (the stage is a Literal)."""
    from genrm_ray.config import ConfigError

    if ds.zero_stage not in (2, 3):  # configs built in code skip the loader's Literal check
        raise ConfigError(f"{key}.zero_stage must be 2 or 3, got {ds.zero_stage}")
    if ds.offload_param and ds.zero_stage != 3:
        raise ConfigError(f"{key}.offload_param needs {key}.zero_stage=3 (ZeRO-2 keeps parameters whole)")
    if ds.gradient_clipping < 0:
        raise ConfigError(f"{key}.gradient_clipping must be >= 0, got {ds.gradient_clipping}")


def check_train_config(cfg: TrainConfig, key: str = "") -> None:
    """Values that would fail later, named by their key (``key`` prefixes them, e.g. "genrm")."""
    from genrm_ray.config import ConfigError

    prefix = f"{key}." if key else ""
    check_deepspeed(cfg.deepspeed, f"{prefix}deepspeed")
    if cfg.model.freeze_bottom_layers < 0:
        raise ConfigError(f"{prefix}model.freeze_bottom_layers must be >= 0, got {cfg.model.freeze_bottom_layers}")
    hp = cfg.train
    for name, value in [("train.max_steps", hp.max_steps), ("train.micro_batch_size", hp.micro_batch_size),
                        ("train.grad_accum", hp.grad_accum), ("train.checkpoint_every", hp.checkpoint_every),
                        ("scaling.num_workers", cfg.scaling.num_workers), ("data.max_length", cfg.data.max_length)]:
        if value < 1:
            raise ConfigError(f"{prefix}{name} must be >= 1, got {value}")
    if cfg.objective.lambda_correct < 0:
        raise ConfigError(f"{prefix}objective.lambda_correct must be >= 0, got {cfg.objective.lambda_correct}")
    if cfg.data.max_verify_examples < 0:
        raise ConfigError(f"{prefix}data.max_verify_examples must be >= 0 (0 = all), got {cfg.data.max_verify_examples}")
