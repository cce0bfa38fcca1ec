"""Models the project builds or starts from.

- ``tiny``: locally trained byte-level tokenizers and random-init Llama models (tests, fast runs);
- ``pretrained``: base models named by an HF dir, a GGUF file or a built-in name
  (``smollm2-135m-instruct``), a GGUF converted once into the cache (``resolve_base_model``).

The names below are the tiny-model API, importable from ``genrm_ray.models`` directly.
"""

from typing import Any

__all__ = ["MODEL_SIZES", "ModelSize", "build_model", "count_parameters", "create_tiny_model", "llama_config",
           "resolve_size", "save_model", "train_tokenizer"]


def __getattr__(name: str) -> Any:
    # Lazy: ``tiny`` imports torch and transformers (seconds), and ``genrm_ray.models.pretrained``, which
    # every job imports to check its config, must not pay that before a bad config is rejected.
    if name in __all__:
        from genrm_ray.models import tiny

        return getattr(tiny, name)
    raise AttributeError(f"module 'genrm_ray.models' has no attribute {name!r}")
