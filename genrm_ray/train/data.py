"""Training examples from SFT files, and length-grouped batches.

Batching choice: **length-grouped batching**, not packing. Each epoch the examples are shuffled,
cut into windows of ``GROUP_WINDOW`` batches, sorted by length inside each window and split into
batches, whose order is then shuffled again. Sequences of similar length share a batch, so right
padding stays small, and no attention mask across packed documents is needed (Llama's SDPA path
would otherwise let packed examples attend to each other). The padding share (pad tokens / all
tokens in the batches) is measured per batch and logged as ``padding_share``.

The batch order is a pure function of (seed, epoch), so a resumed run draws exactly the batches an
uninterrupted run would have drawn from the step it resumes at.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from genrm_ray import prompts
from genrm_ray.data.sft import SFTDataError, load_sft_jsonl

GROUP_WINDOW = 50  # batches per sort window: larger = less padding, less randomness in batch makeup


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    loss_mask: list[int]  # 1 on target tokens (LM objectives); all zero for classification
    label: float  # 1.0 / 0.0 for the discriminative objective; unused otherwise


def load_examples(
    path: str | Path, kind: str, tokenizer: PreTrainedTokenizerBase, max_length: int, classify: bool = False
) -> list[Example]:
    """Tokenize an SFT file whose records must all be of ``kind``.

    ``classify``: the input is the prompt alone (x + y + the verification question) and the label
    is the record's correctness, for the discriminative reward model.
    """
    examples = []
    for i, record in enumerate(load_sft_jsonl(path, kinds=[kind]), 1):
        try:
            if classify:
                ids = tokenizer.encode(record.prompt, add_special_tokens=True)  # as prompts.tokenize_pair does
                if len(ids) > max_length:
                    raise ValueError(f"prompt is {len(ids)} tokens, over max_length={max_length}")
                examples.append(Example(ids, [0] * len(ids), float(record.label)))
            else:
                tok = prompts.tokenize_pair(tokenizer, record.prompt, record.target, max_length=max_length)
                examples.append(Example(tok.input_ids, tok.loss_mask, float(bool(record.label))))
        except ValueError as e:
            # Record i is on line i unless the file has blank lines; say "record" to stay honest.
            raise SFTDataError(f"{path}: record {i}: {e} (data.max_length)") from None
    return examples


def balanced_subset(examples: list[Example], n: int, seed: int) -> list[Example]:
    """At most ``n`` examples, a seeded draw of n // 2 with label 1 and n - n // 2 with label 0 (fewer
    of a label when it has fewer), in their original order; all of them when ``n`` is 0 or covers them."""
    if n <= 0 or n >= len(examples):
        return examples
    rng = random.Random(seed)
    yes = [i for i, e in enumerate(examples) if e.label]
    no = [i for i, e in enumerate(examples) if not e.label]
    keep = rng.sample(yes, min(n // 2, len(yes))) + rng.sample(no, min(n - n // 2, len(no)))
    return [examples[i] for i in sorted(keep)]


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices of the examples, grouped into batches of similar length, in a seeded order."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * GROUP_WINDOW
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int) -> tuple[dict[str, torch.Tensor], int, int]:
    """Right-pad to the longest example; returns (batch, real tokens, pad tokens)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    loss_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        attention[row, :n] = 1
        loss_mask[row, :n] = torch.tensor(e.loss_mask)
    labels = torch.tensor([e.label for e in examples])
    real = int(attention.sum())
    batch = {"input_ids": ids, "attention_mask": attention, "loss_mask": loss_mask, "labels": labels}
    return batch, real, ids.numel() - real


class BatchStream:
    """Deterministic batches for (step, micro-step, rank): epoch after epoch of length-grouped batches.

    Global micro-batch g = (step * grad_accum + micro) * world_size + rank; each rank sees a disjoint
    share of every epoch's batches.
    """

    def __init__(self, examples: list[Example], batch_size: int, seed: int, pad_id: int):
        if not examples:
            raise ValueError("no training examples")
        self.examples, self.batch_size, self.seed, self.pad_id = examples, batch_size, seed, pad_id
        self._lengths = [len(e.input_ids) for e in examples]
        self._epoch, self._batches = -1, []

    def get(self, g: int) -> tuple[dict[str, torch.Tensor], int, int]:
        per_epoch = -(-len(self.examples) // self.batch_size)
        epoch, index = divmod(g, per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, length_grouped_batches(self._lengths, self.batch_size, self.seed, epoch)
        return collate([self.examples[i] for i in self._batches[index]], self.pad_id)
