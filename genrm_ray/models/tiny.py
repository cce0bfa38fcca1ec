"""Locally trained tokenizers and small Llama-architecture models, saved in Hugging Face format.

No weights can be downloaded here, so every model starts from a random init built from a config.
The tokenizer is byte-level (any text encodes) with two twists:

- by default it learns no merges at all (`vocab_size=None`), because the embedded tasks (last
  letters of random words, sorting words) need each character as its own token;
- whole phrases (the prompt boilerplate and, crucially, `` Yes`` / `` No`` with their leading
  space) are added tokens, one id each, so GenRM can read p(Yes) from one next-token
  distribution and prompts stay short on CPU.

`tokenizer(text)` prepends `<s>`; `add_special_tokens=False` does not. The saved directory loads
with transformers `from_pretrained`, DeepSpeed and vLLM (see tests/test_models.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
BYTE_VOCAB_SIZE = 256


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int | None = None,
    phrases: Sequence[str] | None = None,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and add each of `phrases` as one token.

    `vocab_size` None or 256: bytes only, no merges (`texts` is then unused). Larger: learn
    merges from `texts` up to that many base tokens (phrases and <s>, </s>, <pad> come on top).
    `phrases` defaults to `genrm_ray.prompts.TOKENIZER_PHRASES`. Raises ValueError if a phrase
    is empty, a special token, or does not decode back to itself.
    """
    if phrases is None:
        from genrm_ray.prompts import TOKENIZER_PHRASES

        phrases = TOKENIZER_PHRASES
    phrases = list(dict.fromkeys(phrases))  # duplicates are harmless; keep the first
    _check_phrases(phrases)
    if vocab_size is not None and vocab_size < BYTE_VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size} is below the {BYTE_VOCAB_SIZE} byte tokens")

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size is None or vocab_size == BYTE_VOCAB_SIZE:
        # Pure byte level: one token per byte, in a fixed order, independent of any corpus.
        vocab = {ch: i for i, ch in enumerate(sorted(alphabet, key=_byte_of))}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        _set_byte_level(tok)
    else:
        tok = Tokenizer(models.BPE())
        _set_byte_level(tok)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=alphabet, special_tokens=[], show_progress=False
        )
        tok.train_from_iterator(texts, trainer=trainer)

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (BOS, EOS, PAD)])
    # single_word: " No" must not eat the start of " Nomad" (the tasks spell such words out).
    # normalized=False: match the raw text, spaces included.
    tok.add_tokens([AddedToken(p, special=False, normalized=False, single_word=True) for p in phrases])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,  # any cleanup would break exact round trips
        padding_side="left",  # generation pads on the left; training code sets its own side
        model_max_length=1 << 30,
    )
    for phrase in phrases:
        ids = tokenizer.encode(phrase, add_special_tokens=False)
        if len(ids) != 1 or tokenizer.decode(ids) != phrase:
            raise ValueError(f"phrase {phrase!r} did not become one token that decodes to itself: {ids}")
    return tokenizer


def _byte_of(ch: str) -> int:
    return _UNICODE_TO_BYTE[ch]


def _gpt2_byte_map() -> dict[str, int]:
    # The byte <-> printable-character map that ByteLevel uses (printable bytes map to themselves,
    # the rest to 256 + k); recomputed here only to order the 256 base tokens by byte value.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = 0
    mapping = {}
    for b in range(256):
        if b in printable:
            mapping[chr(b)] = b
        else:
            mapping[chr(256 + extra)] = b
            extra += 1
    return mapping


_UNICODE_TO_BYTE = _gpt2_byte_map()


def _set_byte_level(tok: Tokenizer) -> None:
    # add_prefix_space=False: " Yes" after a prompt must stay " Yes", and decode(encode(x)) == x.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()


def _check_phrases(phrases: Sequence[str]) -> None:
    for i, phrase in enumerate(phrases):
        if not isinstance(phrase, str) or not phrase:
            raise ValueError(f"phrases[{i}] must be a non-empty string, got {phrase!r}")
        if phrase in (BOS, EOS, PAD):
            raise ValueError(f"phrases[{i}] {phrase!r} clashes with a special token")


# ---------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelSize:
    """Shape of a Llama-architecture decoder. Parameter counts below are for the byte-level
    tokenizer (about 270 tokens) with tied input/output embeddings."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None = None  # None: same as num_attention_heads (no GQA)
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        kv = self.num_key_value_heads or self.num_attention_heads
        if self.num_attention_heads % kv:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of num_key_value_heads={kv}")
        # vLLM's CPU attention kernels support head sizes 32, 64, 80, 96, ... only.
        if self.hidden_size // self.num_attention_heads < 32:
            raise ValueError(
                f"head size {self.hidden_size // self.num_attention_heads} < 32 is not supported by vLLM's CPU attention"
            )


# head size 32 for tiny/small (vLLM CPU minimum), 64 above.
MODEL_SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),  # ~0.1M
    "small": ModelSize(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4),  # ~1.1M
    "base": ModelSize(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6),  # ~10.7M
    "large": ModelSize(hidden_size=640, intermediate_size=1728, num_hidden_layers=8, num_attention_heads=10),  # ~40M
}


def resolve_size(size: str | ModelSize | dict) -> ModelSize:
    """A preset name, a ModelSize, or a dict of ModelSize fields (optionally with "preset": name
    as the starting point, e.g. {"preset": "small", "num_hidden_layers": 6})."""
    if isinstance(size, ModelSize):
        return size
    if isinstance(size, str):
        if size not in MODEL_SIZES:
            raise ValueError(f"unknown model size {size!r}; presets: {sorted(MODEL_SIZES)}")
        return MODEL_SIZES[size]
    if isinstance(size, dict):
        fields = dict(size)
        base = resolve_size(fields.pop("preset")) if "preset" in fields else None
        known = set(ModelSize.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown model size field(s) {unknown}; known: {sorted(known)}")
        return replace(base, **fields) if base else ModelSize(**fields)
    raise TypeError(f"model size must be a preset name, ModelSize or dict, got {type(size).__name__}")


def llama_config(tokenizer: PreTrainedTokenizerBase, size: str | ModelSize | dict) -> LlamaConfig:
    s = resolve_size(size)
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        num_key_value_heads=s.num_key_value_heads or s.num_attention_heads,
        max_position_embeddings=s.max_position_embeddings,
        rope_theta=s.rope_theta,
        rms_norm_eps=s.rms_norm_eps,
        tie_word_embeddings=s.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,  # only read by the classifier head
    )


def build_model(
    tokenizer: PreTrainedTokenizerBase,
    size: str | ModelSize | dict = "tiny",
    seed: int = 0,
    head: Literal["lm", "classifier"] = "lm",
) -> LlamaForCausalLM | LlamaForSequenceClassification:
    """A randomly initialised Llama decoder sized for `tokenizer`, in fp32.

    head="lm": causal LM (the GenRM and the policy). head="classifier": the same backbone with a
    single-logit score head (LlamaForSequenceClassification, num_labels=1), the discriminative
    reward-model baseline; it scores the last non-pad token.
    """
    config = llama_config(tokenizer, size)
    cls = {"lm": LlamaForCausalLM, "classifier": LlamaForSequenceClassification}.get(head)
    if cls is None:
        raise ValueError(f"unknown head {head!r}; expected 'lm' or 'classifier'")
    with torch.random.fork_rng():  # seeded init without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = cls(config)
    return model.float().eval()


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def save_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> Path:
    """Write safetensors weights, config.json, generation_config.json and the tokenizer files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, LlamaForCausalLM):
        # vLLM and `generate` read stop/pad ids from here; without it generation runs to max_tokens.
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def create_tiny_model(
    out_dir: str | Path,
    texts: Iterable[str] = (),
    size: str | ModelSize | dict = "tiny",
    vocab_size: int | None = None,
    seed: int = 0,
    phrases: Sequence[str] | None = None,
    head: Literal["lm", "classifier"] = "lm",
) -> Path:
    """Train a tokenizer, build a random-init model and save both to `out_dir`; returns the path.

    Also writes genrm_model.json (size, vocab_size, seed, parameter count) for provenance.
    """
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, phrases=phrases)
    model = build_model(tokenizer, size, seed=seed, head=head)
    out = save_model(model, tokenizer, out_dir)
    meta = {
        "size": asdict(resolve_size(size)),
        "vocab_size": vocab_size,
        "tokens": len(tokenizer),
        "seed": seed,
        "head": head,
        "parameters": count_parameters(model),
    }
    (out / "genrm_model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
