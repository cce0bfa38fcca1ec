"""The DeepSpeed side of training: engine config, losses, and one optimizer step. No Ray here.

Importable with torch + transformers only (deepspeed is imported by ``build_engine``), so
benchmarks/gpu_train_step.py runs it on a GPU machine that has no ray, and the losses run on a plain
module in the fast tests. The Ray glue (genrm_ray/train/loop.py) calls the same functions.

A batch is a dict of tensors: ``input_ids``, ``attention_mask`` (1 = real token) and either
``loss_mask`` (LM objectives: 1 on target tokens) or ``labels`` (discriminative: 0./1.). Batches
are right-padded.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from genrm_ray.train.config import DeepSpeedConfig, TrainHParams, check_deepspeed

Batch = dict[str, torch.Tensor]


def deepspeed_config(ds: DeepSpeedConfig, micro_batch_size: int, grad_accum: int) -> dict[str, Any]:
    """The DeepSpeed JSON config for ``ds``; ConfigError for settings ZeRO cannot run."""
    check_deepspeed(ds)
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if ds.zero_stage == 3:
        # Read only by engine.save_16bit_model (which writes a pickle); the HF export calls
        # _zero3_consolidated_16bit_state_dict, which gathers either way. Kept for other callers.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": ds.gradient_clipping,
        "bf16": {"enabled": bool(ds.bf16)},  # None (auto) is resolved by the caller (train.config.resolve_bf16)
        "zero_optimization": zero,
        # The client optimizer is torch AdamW (no cpu_adam / fused_adam JIT compile). DeepSpeed only
        # "tests" its own optimizers with ZeRO, and refuses a client one with offload unless told to.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,  # we log ourselves (wall_clock_breakdown prints every step regardless)
        "wall_clock_breakdown": ds.wall_clock_breakdown,
    }


def freeze_bottom(model: torch.nn.Module, layers: int) -> None:
    """Freeze the token embeddings and the bottom ``layers`` decoder layers (model.freeze_bottom_layers)."""
    if layers <= 0:
        return
    backbone = model.base_model  # LlamaModel under both the LM and the classifier head
    blocks = backbone.layers
    if layers > len(blocks):
        raise ValueError(f"model.freeze_bottom_layers={layers}, but the model has {len(blocks)} layers")
    backbone.embed_tokens.requires_grad_(False)
    for block in blocks[:layers]:
        block.requires_grad_(False)


def warmup_cosine(hp: TrainHParams):
    """LR multiplier per optimizer step: linear warm-up, then cosine decay to ``min_lr_ratio``."""

    def factor(step: int) -> float:
        if step < hp.warmup_steps:
            return (step + 1) / hp.warmup_steps
        progress = min(1.0, (step - hp.warmup_steps) / max(1, hp.max_steps - hp.warmup_steps))
        return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def init_process_group(rank: int, world_size: int, master_addr: str, master_port: int) -> bool:
    """Join the torch.distributed group of DeepSpeed ranks that Ray Train does not set up (the GRPO
    policy ranks, the refresh trainer): nccl on a GPU, else gloo. True on a GPU."""
    import os

    import torch.distributed as dist

    # DeepSpeed reads these (without them it falls into MPI discovery); one node, so local = global.
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(0)  # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU
    dist.init_process_group("nccl" if on_gpu else "gloo", init_method=f"tcp://{master_addr}:{master_port}",
                            rank=rank, world_size=world_size)
    return on_gpu


def build_engine(model: torch.nn.Module, ds: DeepSpeedConfig, hp: TrainHParams):
    """Wrap ``model`` in a DeepSpeed engine with AdamW and the warm-up + cosine schedule.

    Expects torch.distributed to be initialised (Ray Train's gloo/nccl group, ``init_process_group``'s,
    or the benchmark's).
    """
    import deepspeed  # here, not at module top: the losses below need no DeepSpeed

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


def concat_batches(a: Batch, b: Batch) -> Batch:
    """Rows of ``a`` then rows of ``b``, right-padded to the wider of the two. Pad positions have
    attention_mask = loss_mask = 0 (and token id 0): with right padding and causal attention no real
    token sees them, so every real token's logits are those of its own batch."""
    width = max(a["input_ids"].shape[1], b["input_ids"].shape[1])

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[1])) if t.ndim == 2 else t  # labels [B] stay as they are

    return {k: torch.cat([pad(a[k]), pad(b[k])]) for k in a.keys() & b.keys()}


class TargetTokenLoss(torch.nn.Module):
    """A causal LM whose forward returns the next-token cross-entropy at target positions only.

    A verify example has one or two target tokens (the verdict) among ~300, and the vocabulary-sized
    head with its fp32 softmax at every position was the largest cost of a step outside DeepSpeed's
    timers (docs/performance.md). Here the decoder runs over every position and the head only where
    the next token is a target.

    Why a module and not a function on the HF model's outputs: the DeepSpeed engine hooks what its
    forward returns to run ZeRO's backward prologue, the gradient-accumulation scaling and the
    timers; a loss computed outside the engine's outputs skips them. The engine wraps this module,
    so the loss IS its output. It holds the HF model's own children under their own names, so its
    state dict (DeepSpeed checkpoints, the export) has the HF model's keys.
    """

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        for name, child in lm.named_children():
            self.add_module(name, child)
        self.__dict__["lm"] = lm  # not registered: its parameters are the children's above

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy [B, T-1] of token t+1 at position t, 0 where token t+1 is not a target."""
        hidden = self.lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        at = loss_mask[:, 1:].bool()
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][at])
        per_target = F.cross_entropy(logits.float(), input_ids[:, 1:][at], reduction="none")
        return per_target.new_zeros(at.shape).masked_scatter(at, per_target)


def unwrap_lm(module: torch.nn.Module) -> torch.nn.Module:
    """The HF model inside a TargetTokenLoss (the module itself otherwise: a classifier)."""
    return module.lm if isinstance(module, TargetTokenLoss) else module


def token_losses(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy [B, T-1] (0 off the targets) and the 0/1 target mask [B, T-1].

    ``model`` is a TargetTokenLoss or a DeepSpeed engine around one.
    """
    if not isinstance(getattr(model, "module", model), TargetTokenLoss):
        raise TypeError(f"token_losses needs the causal LM wrapped in TargetTokenLoss, got {type(model).__name__}")
    per_token = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], loss_mask=batch["loss_mask"])
    return per_token, batch["loss_mask"][:, 1:].float()


def masked_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def lm_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy over the target tokens (``loss_mask``) of the batch."""
    return masked_mean(*token_losses(model, batch))


def genrm_loss(
    model: torch.nn.Module, verify: Batch, correct: Batch | None, lam: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GenRM's L = L_verify + lam * L_correct in ONE forward pass over both batches stacked.

    Each term is still the mean over its own target tokens, so this equals two separate passes
    (up to float error) at the cost of one. ``correct`` None or lam == 0: L_verify alone.
    """
    if correct is None or lam == 0:
        loss = lm_loss(model, verify)
        return loss, {"loss_verify": loss}
    per_token, mask = token_losses(model, concat_batches(verify, correct))
    n = len(verify["input_ids"])
    terms = {"loss_verify": masked_mean(per_token[:n], mask[:n]), "loss_correct": masked_mean(per_token[n:], mask[n:])}
    return terms["loss_verify"] + lam * terms["loss_correct"], terms


def classifier_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """BCE-with-logits of a num_labels=1 sequence classifier (pooled at the last non-pad token)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.binary_cross_entropy_with_logits(logits.float().squeeze(-1), batch["labels"].float())


def objective_loss(
    model: torch.nn.Module, micro: dict[str, Batch], objective: str, lam: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, named terms) of one micro-batch; one forward pass for every objective."""
    if objective == "discriminative":
        loss = classifier_loss(model, micro["verify"])
        return loss, {"loss_verify": loss}
    if objective == "policy":
        loss = lm_loss(model, micro["correct"])
        return loss, {"loss_correct": loss}
    return genrm_loss(model, micro["verify"], micro.get("correct"), lam)


def train_step(engine, micro_batches: list[dict[str, Batch]], objective: str, lam: float) -> dict[str, float]:
    """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss terms.

    Each micro-batch maps a set name to a batch: genrm {"verify", "correct" (if lam > 0)},
    policy {"correct"}, discriminative {"verify"}. One forward and one backward per micro-batch;
    DeepSpeed divides by grad_accum and steps the optimizer and LR schedule on the last one.
    """
    terms: dict[str, float] = {}
    for micro in micro_batches:
        loss, parts = objective_loss(engine, micro, objective, lam)
        engine.backward(loss)
        engine.step()
        for name, value in {"loss": loss, **parts}.items():
            terms[name] = terms.get(name, 0.0) + value.item() / len(micro_batches)
    return terms
