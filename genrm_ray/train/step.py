"""The DeepSpeed side of training: engine config, losses, and one optimizer step. No Ray here.

Importable with torch + transformers + deepspeed only, so benchmarks/gpu_train_step.py runs it on a
GPU machine that has no ray. The Ray glue (genrm_ray/train/loop.py) calls the same functions.

A batch is a dict of tensors: ``input_ids``, ``attention_mask`` (1 = real token) and either
``loss_mask`` (LM objectives: 1 on target tokens) or ``labels`` (discriminative: 0./1.).
"""

from __future__ import annotations

import math
from typing import Any

import deepspeed
import torch
import torch.nn.functional as F

from genrm_ray.train.config import DeepSpeedConfig, TrainHParams

VALID_ZERO_STAGES = (2, 3)


def deepspeed_config(ds: DeepSpeedConfig, micro_batch_size: int, grad_accum: int) -> dict[str, Any]:
    """The DeepSpeed JSON config for ``ds``; ValueError for settings ZeRO cannot run."""
    if ds.zero_stage not in VALID_ZERO_STAGES:
        raise ValueError(f"deepspeed.zero_stage must be 2 or 3, got {ds.zero_stage}")
    if ds.offload_param and ds.zero_stage != 3:
        raise ValueError("deepspeed.offload_param needs deepspeed.zero_stage=3 (ZeRO-2 keeps parameters whole)")
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if ds.zero_stage == 3:
        # One consolidated 16-bit state dict on save_16bit_model (the HF export), not per-rank shards.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": ds.gradient_clipping,
        "bf16": {"enabled": ds.bf16},
        "zero_optimization": zero,
        # The client optimizer is torch AdamW (no cpu_adam / fused_adam JIT compile). DeepSpeed only
        # "tests" its own optimizers with ZeRO, and refuses a client one with offload unless told to.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,  # we log ourselves
        "wall_clock_breakdown": False,
    }


def warmup_cosine(hp: TrainHParams):
    """LR multiplier per optimizer step: linear warm-up, then cosine decay to ``min_lr_ratio``."""

    def factor(step: int) -> float:
        if step < hp.warmup_steps:
            return (step + 1) / hp.warmup_steps
        progress = min(1.0, (step - hp.warmup_steps) / max(1, hp.max_steps - hp.warmup_steps))
        return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_engine(model: torch.nn.Module, ds: DeepSpeedConfig, hp: TrainHParams):
    """Wrap ``model`` in a DeepSpeed engine with AdamW and the warm-up + cosine schedule.

    Expects torch.distributed to be initialised (Ray Train's gloo/nccl group, or the benchmark's).
    """
    deepspeed.init_distributed(dist_backend=torch.distributed.get_backend())  # reuses the group
    config = deepspeed_config(ds, hp.micro_batch_size, hp.grad_accum)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]  # norms, biases
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hp.lr,
        betas=(0.9, 0.95),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(hp))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule, config=config)
    return engine


def lm_loss(engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the target tokens (``loss_mask``) of the batch."""
    logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Position t predicts token t+1; the loss counts where token t+1 is a target token.
    logits, targets, mask = logits[:, :-1], batch["input_ids"][:, 1:], batch["loss_mask"][:, 1:].float()
    per_token = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (per_token * mask.flatten()).sum() / mask.sum().clamp(min=1)


def classifier_loss(engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """BCE-with-logits of a num_labels=1 sequence classifier (pooled at the last non-pad token)."""
    logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.binary_cross_entropy_with_logits(logits.float().squeeze(-1), batch["labels"].float())


def train_step(engine, micro_batches: list[dict[str, dict[str, torch.Tensor]]], objective: str, lam: float) -> dict[str, float]:
    """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss terms.

    Each micro-batch maps a set name to a batch: genrm {"verify", "correct" (if lam > 0)},
    policy {"correct"}, discriminative {"verify"}. GenRM's loss is l_verify + lam * l_correct, each
    a mean over its own target tokens. DeepSpeed divides by grad_accum and steps the optimizer and
    LR schedule on the last micro-batch.
    """
    terms: dict[str, float] = {}
    for micro in micro_batches:
        if objective == "discriminative":
            parts = {"loss_verify": classifier_loss(engine, micro["verify"])}
            loss = parts["loss_verify"]
        elif objective == "policy":
            parts = {"loss_correct": lm_loss(engine, micro["correct"])}
            loss = parts["loss_correct"]
        else:  # genrm
            parts = {"loss_verify": lm_loss(engine, micro["verify"])}
            loss = parts["loss_verify"]
            if lam > 0:
                parts["loss_correct"] = lm_loss(engine, micro["correct"])
                loss = loss + lam * parts["loss_correct"]
        engine.backward(loss)
        engine.step()
        for name, value in {"loss": loss, **parts}.items():
            terms[name] = terms.get(name, 0.0) + value.item() / len(micro_batches)
    return terms
