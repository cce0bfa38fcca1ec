"""Models the project builds or starts from.

- ``tiny``: locally trained byte-level tokenizers and random-init Llama models (tests, fast runs);
- ``pretrained``: base models named by an HF dir, a GGUF file or a built-in name
  (``smollm2-135m-instruct``), a GGUF converted once into the cache (``resolve_base_model``).

The names below are the tiny-model API, importable from ``genrm_ray.models`` directly.
"""

from genrm_ray.models.tiny import (
                                   MODEL_SIZES,
                                   ModelSize,
                                   build_model,
                                   count_parameters,
                                   create_tiny_model,
                                   llama_config,
                                   resolve_size,
                                   save_model,
                                   train_tokenizer,
)

__all__ = ["MODEL_SIZES", "ModelSize", "build_model", "count_parameters", "create_tiny_model", "llama_config",
           "resolve_size", "save_model", "train_tokenizer"]
