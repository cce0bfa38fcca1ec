"""transformers backend: `generate` for sampling, one forward pass for next-token log-probs.

Works wherever torch does (no vLLM needed); batched with left padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from genrm_ray.engine.base import Completion, check_generate_args, check_token_ids


class HFBackend:
    """`GenerationBackend` over `AutoModelForCausalLM`.

    Options: dtype ("float32" | "bfloat16" | "float16"), device ("cpu", "cuda", ...),
    batch_size (prompts per forward pass / `generate` call).
    """

    def __init__(self, model_dir: str | Path, *, dtype: str = "float32", device: str = "cpu", batch_size: int = 32):
        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.tokenizer.padding_side = "left"  # generation continues from the last prompt token
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer in {self.model_dir} has no pad token; left padding needs one")
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=getattr(torch, dtype))
        self.model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size

    def _encode(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    @torch.inference_mode()
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
        greedy = temperature == 0
        # top_k=0: transformers samples from the top 50 by default; vLLM (and we) do not filter.
        sampling = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        results: list[list[Completion]] = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, len(prompts), self.batch_size):
                batch = self._encode(prompts[start : start + self.batch_size])
                prompt_len = batch["input_ids"].shape[1]
                criteria = StoppingCriteriaList([_StopStrings(self.tokenizer, stops, prompt_len)] if stops else [])
                out = self.model.generate(
                    **batch,
                    **sampling,
                    num_return_sequences=n,
                    max_new_tokens=max_tokens,
                    stopping_criteria=criteria,
                    eos_token_id=self.tokenizer.eos_token_id,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
                new = out[:, prompt_len:].tolist()
                done = [self._completion(ids, stops, max_tokens) for ids in new]
                results.extend(done[i : i + n] for i in range(0, len(done), n))
        return results

    def _completion(self, ids: list[int], stops: list[str], max_tokens: int) -> Completion:
        eos = self.tokenizer.eos_token_id
        if eos in ids:
            ids = ids[: ids.index(eos) + 1]
        else:  # rows that a stop string ended early are padded up to the longest row
            while ids and ids[-1] == self.tokenizer.pad_token_id:
                ids.pop()
        text = self._decode(ids)
        cut = _first_stop(text, stops)
        if cut is not None:
            # Keep the ids through the token that completed the stop string (as vLLM does).
            k = next(k for k in range(1, len(ids) + 1) if _first_stop(self._decode(ids[:k]), stops) is not None)
            return Completion(text[:cut], ids[:k], "stop")
        finish = "stop" if ids and ids[-1] == eos else "length"
        return Completion(text, ids, finish)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> list[list[float]]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, got a single string")
        ids = check_token_ids(token_ids, self.model.config.vocab_size)
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[start : start + self.batch_size])
            mask = batch["attention_mask"]
            # Left padding: positions must count real tokens only, as in `generate`.
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(**batch, position_ids=position_ids, logits_to_keep=1).logits[:, -1]
            logprobs = torch.log_softmax(logits.float(), dim=-1)[:, ids]
            out.extend(logprobs.tolist())
        return out


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


class _StopStrings(StoppingCriteria):
    """Ends a row once its generated text contains any stop string (per-row, as a bool tensor)."""

    def __init__(self, tokenizer, stops: list[str], prompt_len: int):
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        return torch.tensor([_first_stop(t, self.stops) is not None for t in texts], device=input_ids.device)
