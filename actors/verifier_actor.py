"""VerifierActor: the served GenRM's trainer during GRPO's verifier refresh (genrm_ray.rl.refresh).

One DeepSpeed ZeRO rank (its own one-process gloo group, nccl on a GPU) over the verifier's HF export,
with the GenRM loss at target positions (train.step.TargetTokenLoss, as in GenRM training). Each
``train`` call takes ``refresh.steps`` optimizer steps on the examples it is given, then publishes the
weights: ``published()`` returns (version, ObjectRef of the HF-named state dict), which the served
replicas fetch through the object store when their version is older (serving ``reload.actor``). Run
it with max_concurrency >= 2, so that replicas can read the version while a refresh trains.
"""

from __future__ import annotations

import socket
from typing import Any

import ray
import torch

import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)
from genrm_ray.data.sft import SFTRecord
from genrm_ray.env import release_free_memory
from genrm_ray.rl.config import RefreshConfig


@ray.remote
class VerifierActor:
    def __init__(self, model_dir: str, cfg: RefreshConfig):
        import copy

        from transformers import AutoModelForCausalLM, AutoTokenizer

        from genrm_ray.train.config import TrainHParams, resolve_bf16
        from genrm_ray.train.step import TargetTokenLoss, build_engine, init_process_group

        on_gpu = torch.cuda.is_available()
        if cfg.deepspeed.bf16 is None:  # auto: what this hardware runs fast
            cfg = copy.deepcopy(cfg)
            cfg.deepspeed.bf16 = resolve_bf16(cfg.deepspeed, on_gpu=on_gpu, key="refresh.deepspeed")
        self.cfg, self.model_dir = cfg, model_dir
        with socket.socket() as s:  # one rank in this process: any free local port
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        init_process_group(0, 1, "127.0.0.1", port)
        torch.manual_seed(cfg.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        # Flat LR (min_lr_ratio=1, no warm-up): refreshes come at no fixed horizon.
        hp = TrainHParams(max_steps=1, micro_batch_size=cfg.micro_batch_size, grad_accum=1, lr=cfg.lr,
                          weight_decay=0.0, warmup_steps=0, min_lr_ratio=1.0, seed=cfg.seed)
        self.engine = build_engine(TargetTokenLoss(model), cfg.deepspeed, hp)
        self.micro_steps = 0  # batches drawn so far: each refresh continues the seeded order
        self._published: tuple[int, Any] = (0, None)  # version 0: the export as loaded; each refresh adds one

    def train(self, records: list[SFTRecord]) -> dict[str, float]:
        """``refresh.steps`` optimizer steps on ``records`` (epoch after epoch of length-grouped
        batches), then the new weights are published as the next version. The loss before the first
        and after the last step's update is measured on the same batches, for the log."""
        from genrm_ray import prompts
        from genrm_ray.train.data import BatchStream, Example
        from genrm_ray.train.step import lm_loss

        examples = []
        for r in records:
            try:
                tok = prompts.tokenize_pair(self.tokenizer, r.prompt, r.target, max_length=self.cfg.max_length)
            except ValueError:
                continue  # over refresh.max_length: left out (counted below)
            examples.append(Example(tok.input_ids, tok.loss_mask, float(bool(r.label))))
        if not examples:
            raise ValueError(f"refresh: none of the {len(records)} examples fits refresh.max_length={self.cfg.max_length}")
        stream = BatchStream(examples, self.cfg.micro_batch_size, self.cfg.seed, self.tokenizer.pad_token_id or 0)
        batches = [stream.get(self.micro_steps + i)[0] for i in range(self.cfg.steps)]
        self.micro_steps += self.cfg.steps
        device = self.engine.device
        self.engine.train()
        losses = []
        for batch in batches:
            loss = lm_loss(self.engine, {k: v.to(device) for k, v in batch.items()})
            self.engine.backward(loss)
            self.engine.step()
            losses.append(float(loss.detach()))
        self.engine.eval()
        with torch.no_grad():
            after = [float(lm_loss(self.engine, {k: v.to(device) for k, v in b.items()})) for b in batches]
        version = self._published[0] + 1
        self._published = (version, ray.put(self._state_dict()))
        release_free_memory()  # idle until the next refresh: its activations' peak back to the OS
        return {"verifier_version": float(version), "refresh_loss_before": losses[0],
                "refresh_loss_after": sum(after) / len(after), "refresh_trained": float(len(examples)),
                "refresh_too_long": float(len(records) - len(examples))}

    def _state_dict(self) -> dict[str, torch.Tensor]:
        from genrm_ray.train.step import unwrap_lm

        return {k: v.detach().float().cpu().clone() for k, v in unwrap_lm(self.engine.module).state_dict().items()}

    def weights_version(self) -> int:
        return self._published[0]

    def published(self) -> tuple[int, Any]:
        """(version, ObjectRef of its HF-named fp32 state dict); (0, None) before the first refresh."""
        return self._published

    def save_hf(self, directory: str) -> None:
        """The refreshed verifier as an HF export (weights + config + tokenizer from the original)."""
        from transformers import AutoModelForCausalLM

        from genrm_ray.models import save_model

        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
        model.load_state_dict(self._state_dict())
        save_model(model, self.tokenizer, directory)
