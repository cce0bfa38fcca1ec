"""The trained GRPO policy: one DeepSpeed ZeRO rank per Ray actor (PolicyWorker), and PolicyGroup,
the driver-side helper that places world_size of them, shards each batch across them (data parallel)
and merges their stats.

The DeepSpeed engine comes from ``genrm_ray.train.step.build_engine`` (the same config, AdamW and
warm-up schedule as GenRM training; the LR stays flat after warm-up). The process group is our own
(``torch.distributed`` over TCP to rank 0: gloo on CPU, nccl on GPU), since these are plain actors,
not Ray Train workers.

Loss reduction: each rank minimises the mean GRPO loss over its shard (micro-batches weighted by
their size, accumulated into one optimizer step), and ZeRO averages gradients over ranks; shards are
equal, so the update is that of the mean over the whole batch.
"""

from __future__ import annotations

import copy
import socket
from contextlib import nullcontext

import ray
import torch

import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)
from genrm_ray.env import release_free_memory
from genrm_ray.rl.config import PolicyTrainConfig
from genrm_ray.rl.grpo import RolloutBatch, batch_logprobs, grpo_loss, micro_batches
from genrm_ray.train.config import check_deepspeed, resolve_bf16

MEAN_STATS = ("loss", "pg_loss", "kl", "clip_frac", "ratio_mean")


def _check_batch(batch: RolloutBatch, need_train_fields: bool) -> None:
    if need_train_fields and batch.advantages is None:
        raise ValueError("train_step: batch.advantages must be set (group_advantages)")


@ray.remote
class PolicyWorker:
    """One DeepSpeed rank holding (a ZeRO partition of) the policy; see the module docstring."""

    def __init__(self, model_dir: str, rank: int, world_size: int, master_addr: str, master_port: int,
                 cfg: PolicyTrainConfig):
        from transformers import AutoModelForCausalLM

        from genrm_ray.train.config import TrainHParams
        from genrm_ray.train.step import TargetTokenLoss, build_engine, init_process_group

        self.cfg = cfg
        self.model_dir, self.rank, self.world_size = model_dir, rank, world_size
        init_process_group(rank, world_size, master_addr, master_port)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        # min_lr_ratio=1: flat LR after warm-up (an RL run has no fixed horizon to decay over).
        hp = TrainHParams(max_steps=max(1, cfg.warmup_steps) + 1, micro_batch_size=cfg.micro_batch_size, grad_accum=1,
                          lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
                          min_lr_ratio=1.0, seed=cfg.seed)
        # The head at response tokens only (rl.grpo.token_logprobs); the state dict keeps the HF names.
        self.engine = build_engine(TargetTokenLoss(model), cfg.deepspeed, hp)

    def ready(self) -> int:
        return self.rank

    def _num_micro(self, batch: RolloutBatch) -> int:
        return -(-len(batch) // self.cfg.micro_batch_size)

    def logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        """[B, T] log-probs of the batch under the current weights, no grad."""
        self.engine.eval()
        return batch_logprobs(self.engine, batch, self.cfg.micro_batch_size)

    def train_step(self, batch: RolloutBatch) -> dict[str, float]:
        """One optimizer step over ``batch`` (micro-batches, gradients accumulated); grpo_loss stats
        (means over sequences) + grad_norm (before clipping) + lr."""
        from genrm_ray.rl.grpo import token_logprobs

        _check_batch(batch, need_train_fields=True)
        self.engine.train()
        device = self.engine.device
        parts = micro_batches(batch, self._num_micro(batch))
        sums = dict.fromkeys(MEAN_STATS, 0.0)
        for i, micro in enumerate(parts):
            # One boundary at the last micro-batch: ZeRO reduces and the optimizer steps once.
            self.engine.set_gradient_accumulation_boundary(i == len(parts) - 1)
            logp = token_logprobs(self.engine, micro.input_ids.to(device), micro.attention_mask.to(device),
                                  micro.response_mask.to(device))
            ref = micro.ref_logprobs.to(device) if micro.ref_logprobs is not None else None
            # One optimizer step per batch: the weights that sampled it are these, so without given old
            # log-probs the ratio's denominator is this forward's own (detached), not a second pass.
            old = micro.old_logprobs.to(device) if micro.old_logprobs is not None else logp.detach()
            loss, stats = grpo_loss(logp, old, ref, micro.advantages.to(device),
                                    micro.response_mask.to(device), self.cfg.clip_eps, self.cfg.kl_coef)
            weight = len(micro) / len(batch)  # shard mean = size-weighted mean of micro-batch means
            self.engine.backward(loss * weight)
            for k in MEAN_STATS:
                sums[k] += stats[k] * weight
        self.engine.step()
        release_free_memory()  # the activations' peak, not held while the other roles run
        norm = self.engine.get_global_grad_norm()
        return {**sums, "grad_norm": float(norm) if norm is not None else float("nan"),
                "lr": float(self.engine.get_lr()[0])}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full HF-named weights on CPU on rank 0, {} elsewhere, in the module's dtype: bf16 in DeepSpeed's
        bf16 mode (the values the ranks compute with; an fp32 copy would double the weight sync for
        nothing, the engine casts anyway), else fp32. Collective: every rank calls it."""
        import deepspeed

        module = self.engine.module
        gather = (deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None)
                  if self.cfg.deepspeed.zero_stage == 3 else nullcontext())
        with gather:
            if self.rank != 0:
                return {}
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    def save_checkpoint(self, directory: str, tag: str) -> None:
        """DeepSpeed checkpoint (weights, optimizer, LR schedule) for resume. Collective."""
        self.engine.save_checkpoint(directory, tag=tag)

    def load_checkpoint(self, directory: str, tag: str | None = None) -> None:
        """Restore a ``save_checkpoint`` (tag None: the one named in ``directory/latest``). Collective."""
        path, _ = self.engine.load_checkpoint(directory, tag=tag)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint in {directory} (tag {tag!r})")

    def save_hf(self, directory: str) -> None:
        """HF export: rank 0 writes fp32 weights + config + tokenizer (from model_dir). Collective."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from genrm_ray.models import save_model

        weights = self.state_dict()
        if self.rank != 0:
            return
        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
        model.load_state_dict(weights)
        save_model(model, AutoTokenizer.from_pretrained(self.model_dir), directory)


@ray.remote(num_cpus=0)
def _rendezvous() -> tuple[str, int]:
    """Rank 0's node address and a free TCP port there (run inside bundle 0)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return ray.util.get_node_ip_address(), s.getsockname()[1]


class PolicyGroup:
    """cfg.num_workers PolicyWorkers in one STRICT_PACK placement group; data parallel over equal shards."""

    def __init__(self, model_dir: str, cfg: PolicyTrainConfig, timeout_s: float = 600):
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        world_size = cfg.num_workers
        if world_size < 1:
            raise ValueError(f"train.num_workers must be >= 1, got {world_size}")
        check_deepspeed(cfg.deepspeed, "train.deepspeed")
        resources = dict(cfg.resources_per_worker)
        num_cpus, num_gpus = resources.pop("CPU", 1.0), resources.pop("GPU", 0.0)
        if cfg.deepspeed.bf16 is None:  # auto, as in Ray Train runs: what this hardware runs fast
            cfg = copy.deepcopy(cfg)
            cfg.deepspeed.bf16 = resolve_bf16(cfg.deepspeed, on_gpu=num_gpus > 0, key="train.deepspeed")
        bundle = {"CPU": num_cpus, **({"GPU": num_gpus} if num_gpus else {}), **resources}
        self.world_size, self.workers = world_size, []
        self.pg = placement_group([bundle] * world_size, strategy="STRICT_PACK")
        try:
            ready, _ = ray.wait([self.pg.ready()], timeout=timeout_s)
            if not ready:
                raise TimeoutError(f"PolicyGroup: {world_size} x {bundle} did not fit on one node within {timeout_s:g} s "
                                   f"(train.resources_per_worker; cluster: {ray.available_resources()})")
            on = lambda i: PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i)  # noqa: E731
            addr, port = ray.get(_rendezvous.options(scheduling_strategy=on(0)).remote())
            self.workers = [
                PolicyWorker.options(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources or None,
                                     scheduling_strategy=on(rank)).remote(model_dir, rank, world_size, addr, port, cfg)
                for rank in range(world_size)
            ]
            try:
                ray.get([w.ready.remote() for w in self.workers], timeout=timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise RuntimeError(f"the {world_size} policy rank(s) were placed but did not start (model load, DeepSpeed "
                                   f"init) within {timeout_s:g} s (train.placement_timeout_s)") from None
        except BaseException:  # the caller never gets a group to shut down: free what was placed here
            self.shutdown()
            raise

    def _shards(self, batch: RolloutBatch) -> list[RolloutBatch]:
        if len(batch) % self.world_size:
            raise ValueError(f"batch of {len(batch)} sequences does not split evenly over {self.world_size} policy ranks "
                             "(ZeRO ranks must run the same number of micro-batches)")
        size = len(batch) // self.world_size
        return [batch.select(slice(r * size, (r + 1) * size)) for r in range(self.world_size)]

    def logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        """[B, T] log-probs under the current weights, no grad, each rank scoring its shard."""
        return torch.cat(ray.get([w.logprobs.remote(s) for w, s in zip(self.workers, self._shards(batch))]))

    def train_step(self, batch: RolloutBatch) -> dict[str, float]:
        """One optimizer step on every rank; loss terms averaged over ranks, grad_norm/lr from rank 0."""
        _check_batch(batch, need_train_fields=True)
        results = ray.get([w.train_step.remote(s) for w, s in zip(self.workers, self._shards(batch))])
        merged = {k: sum(r[k] for r in results) / len(results) for k in MEAN_STATS}
        return {**merged, "grad_norm": results[0]["grad_norm"], "lr": results[0]["lr"]}

    def state_dict_ref(self) -> ray.ObjectRef:
        """ObjectRef of rank 0's full state dict (pass it straight to RolloutActor.update_weights)."""
        refs = [w.state_dict.remote() for w in self.workers]
        ray.get(refs[1:])  # the other ranks only join the gather; surface their errors here
        return refs[0]

    def save_checkpoint(self, directory: str, tag: str) -> None:
        ray.get([w.save_checkpoint.remote(directory, tag) for w in self.workers])

    def load_checkpoint(self, directory: str, tag: str | None = None) -> None:
        ray.get([w.load_checkpoint.remote(directory, tag) for w in self.workers])

    def save_hf(self, directory: str) -> None:
        ray.get([w.save_hf.remote(directory) for w in self.workers])

    def shutdown(self) -> None:
        """Kill the workers and free their placement group."""
        for w in self.workers:
            ray.kill(w)
        ray.util.remove_placement_group(self.pg)
