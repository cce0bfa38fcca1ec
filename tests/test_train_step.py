"""genrm_ray.train.step's losses on a plain module (fast tier: no Ray, no DeepSpeed engine).

The LM losses apply the head at target positions only (TargetTokenLoss); loss and gradients must be
those of the full logits. GenRM's step runs D_verify and D_correct as ONE forward/backward over both
batches stacked; the loss and the gradients must be those of the two separate passes it replaced.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from genrm_ray.models import create_tiny_model
from genrm_ray.train.data import Example, collate
from genrm_ray.train.step import TargetTokenLoss, concat_batches, genrm_loss, lm_loss, objective_loss, token_losses


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = create_tiny_model(tmp_path_factory.mktemp("train_step") / "model", size="tiny", seed=0)
    torch.manual_seed(0)
    return TargetTokenLoss(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).train())


def _batch(rng: random.Random, rows: int, lengths: tuple[int, int], vocab: int) -> dict[str, torch.Tensor]:
    """Right-padded rows of random tokens; the targets are a random-length tail of each row."""
    examples = []
    for _ in range(rows):
        n = rng.randint(*lengths)
        start = rng.randint(1, n - 1)
        examples.append(Example([rng.randrange(3, vocab) for _ in range(n)], [0] * start + [1] * (n - start), 0.0))
    return collate(examples, pad_id=2)[0]


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_head_at_targets_only_equals_full_logits(model):
    batch = _batch(random.Random(3), 5, (8, 40), model.lm.config.vocab_size)
    logits = model.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    mask = batch["loss_mask"][:, 1:].float()
    full = F.cross_entropy(logits.flatten(0, 1), batch["input_ids"][:, 1:].flatten(), reduction="none").view_as(mask)
    expected = _grads(model, (full * mask).sum() / mask.sum())

    per_token, got_mask = token_losses(model, batch)
    torch.testing.assert_close(got_mask, mask)
    torch.testing.assert_close(per_token, full * mask, rtol=1e-5, atol=1e-6)  # 0 off the targets
    got = _grads(model, lm_loss(model, batch))
    assert got.keys() == expected.keys() and len(got) > 0
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_lm_losses_refuse_an_unwrapped_model(model):
    batch = _batch(random.Random(4), 2, (10, 20), model.lm.config.vocab_size)
    with pytest.raises(TypeError, match="wrapped in TargetTokenLoss, got LlamaForCausalLM"):
        lm_loss(model.lm, batch)


@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_genrm_single_pass_equals_two_passes(model, lam):
    rng = random.Random(0)
    vocab = model.lm.config.vocab_size
    # Different row counts and widths: stacking must pad the narrower batch and keep each mean its own.
    verify, correct = _batch(rng, 4, (20, 60), vocab), _batch(rng, 3, (5, 25), vocab)
    assert verify["input_ids"].shape[1] != correct["input_ids"].shape[1]

    l_verify, l_correct = lm_loss(model, verify), lm_loss(model, correct)  # the two-pass reference
    two_pass = l_verify + lam * l_correct
    expected = _grads(model, two_pass)

    loss, terms = genrm_loss(model, verify, correct, lam)
    got = _grads(model, loss)

    torch.testing.assert_close(terms["loss_verify"], l_verify, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["loss_correct"], l_correct, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, two_pass, rtol=1e-5, atol=1e-6)
    assert got.keys() == expected.keys() and len(got) > 0
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_genrm_without_correct_set_is_verify_alone(model):
    verify = _batch(random.Random(1), 3, (10, 30), model.lm.config.vocab_size)
    for correct, lam in [(None, 1.0), (verify, 0.0)]:
        loss, terms = genrm_loss(model, verify, correct, lam)
        assert set(terms) == {"loss_verify"}
        torch.testing.assert_close(loss, lm_loss(model, verify))


def test_objective_loss_names_its_terms(model):
    batch = _batch(random.Random(2), 2, (10, 20), model.lm.config.vocab_size)
    _, terms = objective_loss(model, {"correct": batch}, "policy", 1.0)
    assert set(terms) == {"loss_correct"}
    _, terms = objective_loss(model, {"verify": batch, "correct": batch}, "genrm", 0.5)
    assert set(terms) == {"loss_verify", "loss_correct"}


def test_concat_batches_pads_the_narrower_with_masked_positions():
    a = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5, dtype=torch.long),
         "loss_mask": torch.ones(2, 5, dtype=torch.long), "labels": torch.zeros(2)}
    b = {k: v[:1, :3] if v.ndim == 2 else v[:1] for k, v in a.items()}
    out = concat_batches(a, b)
    assert out["input_ids"].shape == (3, 5) and out["labels"].shape == (3,)
    assert out["attention_mask"][2].tolist() == [1, 1, 1, 0, 0] and out["loss_mask"][2].tolist() == [1, 1, 1, 0, 0]
    assert torch.equal(out["input_ids"][:2], a["input_ids"])


def test_bf16_is_resolved_for_the_hardware(monkeypatch):
    import genrm_ray.env
    from genrm_ray.train.config import DeepSpeedConfig, resolve_bf16

    for fast in (False, True):
        monkeypatch.setattr(genrm_ray.env, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert resolve_bf16(DeepSpeedConfig(), on_gpu=False) is fast  # auto: bf16 only where it is fast
        assert resolve_bf16(DeepSpeedConfig(), on_gpu=True) is True
        assert resolve_bf16(DeepSpeedConfig(bf16=False), on_gpu=True) is False
    monkeypatch.setattr(genrm_ray.env, "cpu_has_fast_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"genrm.deepspeed.bf16=true on a CPU without bf16 instructions"):
        assert resolve_bf16(DeepSpeedConfig(bf16=True), on_gpu=False, key="genrm.deepspeed") is True


def test_freeze_bottom_leaves_only_the_top_layers_trainable(tmp_path):
    from transformers import AutoModelForCausalLM

    from genrm_ray.models import create_tiny_model
    from genrm_ray.train.step import freeze_bottom

    model = AutoModelForCausalLM.from_pretrained(create_tiny_model(tmp_path / "m", size="tiny"))  # 2 layers, tied head
    freeze_bottom(model, 1)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("model.layers.1.", "model.norm")) for name in trainable)
    assert not model.model.embed_tokens.weight.requires_grad and not model.lm_head.weight.requires_grad  # tied
    with pytest.raises(ValueError, match="freeze_bottom_layers=3, but the model has 2 layers"):
        freeze_bottom(model, 3)
