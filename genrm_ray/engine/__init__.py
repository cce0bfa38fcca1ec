"""Generation backends: one interface (`GenerationBackend`), vLLM and transformers behind it.

    backend = make_backend("vllm", model_dir, dtype="float32")
    backend.generate(prompts, n=4, temperature=1.0, stop=["\\n\\n"], seed=0)  # list[list[Completion]]
    backend.next_token_logprobs(prompts, [yes_id, no_id])                    # list[list[float]]

`AsyncVLLMBackend` offers the same two operations as coroutines (for Ray Serve). vLLM is imported
only when a vLLM backend is made, so the transformers backend works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrm_ray.engine.base import Completion, GenerationBackend
from genrm_ray.engine.hf_backend import HFBackend
from genrm_ray.engine.vllm_backend import AsyncVLLMBackend, VLLMBackend
from genrm_ray.runs import is_hf_model_dir

BACKENDS = {"vllm": VLLMBackend, "hf": HFBackend}


def make_backend(kind: str, model_dir: str | Path, **options: Any) -> GenerationBackend:
    """A backend of `kind` ("vllm" | "hf") over the saved model in `model_dir`.

    `options` go to the backend's constructor: see `vllm_backend.engine_kwargs` and `HFBackend`.
    """
    if kind not in BACKENDS:
        raise ValueError(f"unknown generation backend {kind!r}; expected one of {sorted(BACKENDS)}")
    path = Path(model_dir)
    if not is_hf_model_dir(path):
        raise FileNotFoundError(
            f"model directory {path} does not exist or has no config.json; "
            "make one with genrm_ray.models.tiny.create_tiny_model or save_pretrained"
        )
    return BACKENDS[kind](path, **options)


__all__ = ["AsyncVLLMBackend", "BACKENDS", "Completion", "GenerationBackend", "HFBackend", "VLLMBackend", "make_backend"]
