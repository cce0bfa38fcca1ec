"""GRPO math (genrm_ray.rl.grpo) and the GRPO actors: RolloutActor (vLLM + weight sync), PolicyGroup
(DeepSpeed ZeRO-3 over 2 gloo ranks, built from the GRPO config's typed train section), ReferenceActor.
One RolloutActor and one 2-rank PolicyGroup per module; the tests that change the policy's weights
compare against the state they start from."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from genrm_ray.rl.config import PolicyTrainConfig
from genrm_ray.rl.grpo import (
    RolloutBatch,
    batch_logprobs,
    group_advantages,
    grpo_loss,
    make_rollout_batch,
    micro_batches,
    token_logprobs,
)
from genrm_ray.train.config import DeepSpeedConfig
from tests.configs import job_module

# ----------------------------------------------------------------------------------------------
# Math (no Ray)


def test_group_advantages_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 3.0, 0.0, 0.0])
    adv = group_advantages(rewards, group_size=4)
    s1 = math.sqrt((4 * 0.25) / 3)  # unbiased std of [1, 0, 0, 1]
    s3 = math.sqrt((3 * 0.75**2 + 2.25**2) / 3)  # [0, 3, 0, 0], mean 0.75
    expected = [0.5 / s1, -0.5 / s1, -0.5 / s1, 0.5 / s1, 0, 0, 0, 0, -0.75 / s3, 2.25 / s3, -0.75 / s3, -0.75 / s3]
    torch.testing.assert_close(adv, torch.tensor(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(group_advantages(rewards, 4, scale=False)[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_group_advantages_bad_input():
    with pytest.raises(ValueError, match="groups of group_size=3"):
        group_advantages(torch.zeros(8), 3)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.zeros(2, 4), 4)
    with pytest.raises(ValueError, match="NaN"):
        group_advantages(torch.tensor([0.0, float("nan")]), 2)


def test_make_rollout_batch_masks_and_padding():
    b = make_rollout_batch([[1, 5], [1, 6, 7]], [[8, 9, 2], [10]], pad_id=0)
    assert b.input_ids.tolist() == [[1, 5, 8, 9, 2], [1, 6, 7, 10, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert b.response_mask.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 1, 0]]
    assert b.advantages is None and b.old_logprobs is None and b.ref_logprobs is None
    with pytest.raises(ValueError, match=r"response_ids\[1\] is empty"):
        make_rollout_batch([[1], [1]], [[3], []], pad_id=0)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        make_rollout_batch([[1], [1]], [[3]], pad_id=0)


def test_micro_batches_trim_padding_and_keep_order():
    b = make_rollout_batch([[1, 5]] * 3, [[8], [8, 9, 9, 9], [8, 9]], pad_id=0)
    parts = micro_batches(b, 2)
    assert [len(p) for p in parts] == [2, 1]
    assert parts[0].input_ids.shape == (2, 6) and parts[1].input_ids.shape == (1, 4)
    assert torch.cat([p.input_ids[:, :4] for p in parts]).tolist() == b.input_ids[:, :4].tolist()


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def test_token_logprobs_alignment(hf_model):
    ids = torch.tensor([[1, 40, 41, 42, 43], [1, 50, 51, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    lp = token_logprobs(hf_model, ids, mask)
    with torch.no_grad():
        full = torch.log_softmax(hf_model(input_ids=ids[:1]).logits[0].float(), -1)
    assert lp.shape == (2, 5) and lp[:, 0].abs().max() == 0
    torch.testing.assert_close(lp[0, 1:], full[torch.arange(4), ids[0, 1:]])
    # Right padding does not change the real tokens' values; micro-batching does not either.
    torch.testing.assert_close(lp[1, :3], token_logprobs(hf_model, ids[1:, :3], mask[1:, :3])[0])
    batch = RolloutBatch(ids, mask, mask.float())
    torch.testing.assert_close(batch_logprobs(hf_model, batch, micro_batch_size=1) * mask, lp.detach() * mask)


def test_token_logprobs_at_response_tokens_equal_the_full_head(hf_model):
    """A TargetTokenLoss model applies the head at the response tokens only: the same values there
    (and the same gradients through them), 0 elsewhere."""
    from genrm_ray.train.step import TargetTokenLoss

    ids = torch.tensor([[1, 40, 41, 42, 43], [1, 50, 51, 52, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    response = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 1, 0]], dtype=torch.float32)
    full = token_logprobs(hf_model, ids, mask)
    (full * response).sum().backward()
    want = {n: p.grad.clone() for n, p in hf_model.named_parameters()}
    hf_model.zero_grad(set_to_none=True)
    got = token_logprobs(TargetTokenLoss(hf_model), ids, mask, response)
    torch.testing.assert_close(got, full.detach() * response)
    got.sum().backward()
    for n, p in hf_model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], msg=n)
    hf_model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="needs response_mask"):
        token_logprobs(TargetTokenLoss(hf_model), ids, mask)


def _loss_and_grad(logp0, old, adv, mask, ref=None, clip_eps=0.2, kl_coef=0.0):
    logp = logp0.clone().requires_grad_(True)
    loss, stats = grpo_loss(logp, old, ref, adv, mask, clip_eps, kl_coef)
    loss.backward()
    return loss, stats, logp.grad


def test_grpo_loss_gradient_sign_follows_advantage():
    old = torch.full((2, 4), -2.0)
    mask = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 0]], dtype=torch.float32)
    _, stats, grad = _loss_and_grad(old, old, torch.tensor([1.0, -1.0]), mask)
    # Gradient descent on the loss raises log p of the positive-advantage response and lowers the other.
    assert (grad[0, 1:] < 0).all() and (grad[1, 1:3] > 0).all()
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["clip_frac"] == 0.0
    # Per-sequence mean, then batch mean: 3 tokens of sequence 0 weigh 1/3 each, 2 of sequence 1 1/2.
    torch.testing.assert_close(grad[0, 1:], torch.full((3,), -1 / 6))
    torch.testing.assert_close(grad[1, 1:3], torch.full((2,), 1 / 4))


def test_grpo_loss_clipping():
    old = torch.zeros(2, 3)
    mask = torch.ones(2, 3)
    logp = torch.full((2, 3), math.log(1.5))  # ratio 1.5, beyond 1 + 0.2
    loss, stats, grad = _loss_and_grad(logp, old, torch.tensor([1.0, -1.0]), mask, clip_eps=0.2)
    # A > 0: the clipped side (1.2 * A) is the minimum, so no gradient pushes the ratio further.
    assert grad[0].abs().max() == 0
    # A < 0: min(1.5 * -1, 1.2 * -1) = -1.5 is the unclipped side; its gradient still pulls the ratio down.
    assert (grad[1] > 0).all()
    assert stats["clip_frac"] == pytest.approx(0.5)
    assert loss.item() == pytest.approx((-1.2 + 1.5) / 2)


def test_grpo_loss_kl_is_zero_at_reference_and_positive_elsewhere():
    logp = torch.tensor([[0.0, -1.0, -2.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    adv = torch.tensor([0.5])
    loss, stats, grad = _loss_and_grad(logp, logp, adv, mask, ref=logp.clone(), kl_coef=0.1)
    assert stats["kl"] == 0.0 and loss.item() == pytest.approx(stats["pg_loss"])
    ref = torch.tensor([[0.0, -1.5, -1.0]])
    loss, stats, _ = _loss_and_grad(logp, logp, adv, mask, ref=ref, kl_coef=0.1)
    k3 = [math.exp(d) - d - 1 for d in (-0.5, 1.0)]
    assert stats["kl"] == pytest.approx(sum(k3) / 2, rel=1e-5)
    assert loss.item() == pytest.approx(stats["pg_loss"] + 0.1 * stats["kl"], rel=1e-5)
    # kl_coef 0 or no reference: no KL term.
    for ref_, coef in ((ref, 0.0), (None, 0.1)):
        loss, stats, _ = _loss_and_grad(logp, logp, adv, mask, ref=ref_, kl_coef=coef)
        assert stats["kl"] == 0.0 and loss.item() == pytest.approx(stats["pg_loss"])


def test_grpo_loss_ignores_masked_positions():
    old = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    adv, ref = torch.tensor([1.0]), torch.full((1, 4), -1.2)
    base = old.clone()
    noisy = base.clone()
    noisy[0, 0], noisy[0, 3] = 5.0, -40.0  # prompt and padding positions
    l1, _, g1 = _loss_and_grad(base, old, adv, mask, ref=ref, kl_coef=0.5)
    l2, _, g2 = _loss_and_grad(noisy, old, adv, mask, ref=ref, kl_coef=0.5)
    assert l1.item() == pytest.approx(l2.item())
    assert g2[0, 0] == 0 and g2[0, 3] == 0
    torch.testing.assert_close(g1[0, 1:3], g2[0, 1:3])


# ----------------------------------------------------------------------------------------------
# Actors (Ray, vLLM, DeepSpeed): every test here is marked integration

POLICY_CFG = PolicyTrainConfig(deepspeed=DeepSpeedConfig(zero_stage=3, bf16=False), lr=1e-3, micro_batch_size=2,
                               clip_eps=0.2, kl_coef=0.0, seed=0, warmup_steps=0, num_workers=2,
                               resources_per_worker={"CPU": 0.5})


@pytest.fixture(scope="module")
def prompts():
    from genrm_ray.prompts import solve_prompt
    from genrm_ray.tasks import get_task

    return [solve_prompt("last_letter", p.question) for p in get_task("last_letter").generate("train", 2, seed=0)]


@pytest.fixture(scope="module")
def rollout(ray_cluster, tiny_model_dir):
    import ray

    from actors.rollout_actor import RolloutActor
    from tests.fixtures.models import VLLM_TEST_OPTIONS

    actor = RolloutActor.options(num_cpus=0.5).remote(str(tiny_model_dir), VLLM_TEST_OPTIONS)
    yield actor
    ray.get(actor.close.remote())
    ray.kill(actor)


@pytest.fixture(scope="module")
def policy(ray_cluster, tiny_model_dir):
    from actors.policy_actor import PolicyGroup

    group = PolicyGroup(str(tiny_model_dir), POLICY_CFG)
    yield group
    group.shutdown()


@pytest.fixture(scope="module")
def rollout_batch(rollout, prompts, tiny_model_dir):
    """8 real rollouts (2 prompts x 4) with advantages +1 for the first two of each group, -1 after."""
    import ray
    from transformers import AutoTokenizer

    groups = ray.get(rollout.generate.remote(prompts, n=4, temperature=1.0, max_tokens=12, seed=0))
    flat = [x for g in groups for x in g]
    batch = make_rollout_batch([x.prompt_token_ids for x in flat], [x.token_ids for x in flat],
                               AutoTokenizer.from_pretrained(tiny_model_dir).pad_token_id)
    batch.advantages = torch.tensor([1.0, 1.0, -1.0, -1.0] * 2)
    return batch


def _response_logprob(logprobs: torch.Tensor, batch: RolloutBatch) -> torch.Tensor:
    return (logprobs * batch.response_mask).sum(dim=1)


@pytest.mark.integration
def test_rollout_generate(rollout, prompts, tiny_model_dir):
    import ray
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    groups = ray.get(rollout.generate.remote(prompts, n=3, temperature=1.0, max_tokens=10, seed=1))
    assert [len(g) for g in groups] == [3, 3]
    for prompt, group in zip(prompts, groups):
        for r in group:
            assert r.prompt_token_ids == tok(prompt).input_ids and r.prompt_token_ids[0] == tok.bos_token_id
            assert 1 <= len(r.token_ids) <= 10
            if r.finished:  # on EOS, or on a stop string (cut from the text, kept in the sampled tokens)
                assert r.token_ids[-1] == tok.eos_token_id or len(r.text) < len(tok.decode(r.token_ids))
            else:
                assert len(r.token_ids) == 10  # stopped on max_tokens
    again = ray.get(rollout.generate.remote(prompts, n=3, temperature=1.0, max_tokens=10, seed=1))
    assert [[r.token_ids for r in g] for g in again] == [[r.token_ids for r in g] for g in groups]  # seeded


@pytest.mark.integration
def test_positive_advantage_raises_logprob(policy, rollout_batch):
    batch = dataclasses.replace(rollout_batch, advantages=torch.ones(len(rollout_batch)))
    batch.old_logprobs = policy.logprobs(batch)
    stats = policy.train_step(batch)
    assert set(stats) >= {"loss", "pg_loss", "kl", "clip_frac", "ratio_mean", "grad_norm", "lr"}
    assert stats["ratio_mean"] == pytest.approx(1.0, abs=1e-4)  # one optimizer step: policy == old during it
    assert stats["lr"] == pytest.approx(POLICY_CFG.lr) and stats["grad_norm"] > 0
    change = _response_logprob(policy.logprobs(batch), batch) - _response_logprob(batch.old_logprobs, batch)
    assert (change > 0).all(), change


@pytest.mark.integration
def test_zero3_state_dict_full_and_checkpoint_resume(policy, rollout_batch, hf_model, tmp_path):
    import ray

    batch = rollout_batch
    start = ray.get(policy.state_dict_ref())
    reference = hf_model.state_dict()
    assert set(start) == set(reference)
    for name, value in reference.items():  # gathered, not ZeRO-3's empty partitions
        assert start[name].shape == value.shape and start[name].dtype == torch.float32, name

    policy.save_checkpoint(str(tmp_path), tag="a")
    batch.old_logprobs = policy.logprobs(batch)
    policy.train_step(batch)
    after_step = ray.get(policy.state_dict_ref())
    assert max((after_step[k] - start[k]).abs().max() for k in start) > 1e-3

    policy.load_checkpoint(str(tmp_path))  # tag None: the "latest" file
    restored = ray.get(policy.state_dict_ref())
    for k in start:
        torch.testing.assert_close(restored[k], start[k], rtol=0, atol=0)
    # The optimizer state came back too: the same step again lands on the same weights, and without
    # given old log-probs (GRPO's default: the update's own forward, detached) the step is the same.
    batch.old_logprobs = None
    policy.train_step(batch)
    again = ray.get(policy.state_dict_ref())
    for k in start:
        torch.testing.assert_close(again[k], after_step[k], rtol=0, atol=1e-6)


@pytest.mark.integration
def test_zero3_two_ranks_match_one_rank(ray_cluster, rollout_batch, tiny_model_dir):
    """A 2-rank ZeRO-3 step equals a 1-rank ZeRO-2 step (other micro-batching) from the same start.
    Both groups are fresh: AdamW's state must match too."""
    import ray

    from actors.policy_actor import PolicyGroup

    batch = dataclasses.replace(rollout_batch)
    two = PolicyGroup(str(tiny_model_dir), POLICY_CFG)
    one = PolicyGroup(str(tiny_model_dir), dataclasses.replace(
        POLICY_CFG, num_workers=1, micro_batch_size=3, deepspeed=DeepSpeedConfig(zero_stage=2, bf16=False)))
    try:
        start = ray.get(two.state_dict_ref())
        batch.old_logprobs = two.logprobs(batch)
        torch.testing.assert_close(one.logprobs(batch), batch.old_logprobs, atol=1e-5, rtol=0)
        stats2, stats1 = two.train_step(batch), one.train_step(batch)
        assert stats2["loss"] == pytest.approx(stats1["loss"], abs=1e-5)
        assert stats2["grad_norm"] == pytest.approx(stats1["grad_norm"], rel=1e-4)
        w2, w1 = ray.get(two.state_dict_ref()), ray.get(one.state_dict_ref())
        for k in w1:
            torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=0)
        assert max((w2[k] - start[k]).abs().max() for k in start) > 1e-4
    finally:
        two.shutdown()
        one.shutdown()


@pytest.mark.integration
def test_weight_sync_changes_generation(rollout, policy, rollout_batch, prompts, tiny_model_dir):
    import ray
    from transformers import AutoModelForCausalLM

    batch = rollout_batch
    seqs = [row[m.bool()].tolist() for row, m in zip(batch.input_ids, batch.attention_mask)][:4]
    before = ray.get(rollout.sequence_logprobs.remote(seqs))
    batch.old_logprobs = policy.logprobs(batch)
    policy.train_step(batch)
    ref = policy.state_dict_ref()
    ray.get(rollout.update_weights.remote(ref, 7))
    assert ray.get(rollout.weights_version.remote()) == 7

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    model.load_state_dict(ray.get(ref))
    after = ray.get(rollout.sequence_logprobs.remote(seqs))
    for seq, a, b in zip(seqs, after, before):
        expected = token_logprobs(model, torch.tensor([seq]), torch.ones(1, len(seq), dtype=torch.long))[0]
        torch.testing.assert_close(torch.tensor(a), expected.detach(), atol=1e-3, rtol=0)
        assert (torch.tensor(a) - torch.tensor(b)).abs().max() > 1e-2  # the old weights gave other values


@pytest.mark.integration
def test_update_weights_drops_stale_prefix_cache(rollout, prompts, hf_model, tiny_model_dir):
    """After an update, a prompt whose KV blocks were cached under the old weights is recomputed: its
    next-token log-probs equal transformers' with the new (strongly perturbed) weights."""
    import copy

    import ray
    from transformers import AutoTokenizer

    # Only full KV blocks are cached (32 tokens on CPU here, vLLM's default 128): a prompt of 2+ of either.
    long_prompts = ["".join(prompts * 2)]
    token_ids = list(range(40, 60))
    ray.get(rollout.next_token_logprobs.remote(long_prompts, token_ids))  # fills the prefix cache
    model = copy.deepcopy(hf_model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * p.std() * torch.randn(p.shape, generator=gen))
    ray.get(rollout.update_weights.remote(model.state_dict(), 99))
    got = torch.tensor(ray.get(rollout.next_token_logprobs.remote(long_prompts, token_ids))[0])
    ids = AutoTokenizer.from_pretrained(tiny_model_dir)(long_prompts, return_tensors="pt").input_ids
    assert ids.shape[1] > 256
    with torch.no_grad():
        expected = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)[token_ids]
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=0)


@pytest.mark.integration
def test_reference_actor_is_frozen(ray_cluster, tiny_model_dir, rollout_batch, hf_model):
    import ray

    from actors.reference_actor import ReferenceActor

    actor = ReferenceActor.options(num_cpus=0.25).remote(str(tiny_model_dir), micro_batch_size=3)
    try:
        lp = ray.get(actor.logprobs.remote(rollout_batch))
        expected = token_logprobs(hf_model, rollout_batch.input_ids, rollout_batch.attention_mask).detach()
        mask = rollout_batch.response_mask  # it scores the response tokens only, 0 elsewhere
        torch.testing.assert_close(lp, expected * mask, atol=1e-5, rtol=0)
        torch.testing.assert_close(ray.get(actor.logprobs.remote(rollout_batch)), lp)
    finally:
        ray.kill(actor)


@pytest.mark.integration
def test_policy_group_that_cannot_be_placed_times_out_and_frees_its_placement_group(ray_cluster, tiny_model_dir):
    from ray.util import placement_group_table

    from actors.policy_actor import PolicyGroup

    before = {pg_id for pg_id, pg in placement_group_table().items() if pg["state"] != "REMOVED"}
    cfg = dataclasses.replace(POLICY_CFG, resources_per_worker={"CPU": 64})  # more than the cluster has
    with pytest.raises(TimeoutError, match=r"2 x \{'CPU': 64\} did not fit on one node within 1 s \(train.resources_per_worker"):
        PolicyGroup(str(tiny_model_dir), cfg, timeout_s=1)
    left = {pg_id for pg_id, pg in placement_group_table().items() if pg["state"] != "REMOVED"}
    assert left <= before  # the failed group's placement group was removed, not left reserved


@pytest.mark.integration
def test_the_job_names_an_actor_that_cannot_be_placed_once_its_placement_timeout_is_out(ray_cluster):
    """jobs/train_grpo.py's wait for its actors: Ray keeps an actor it cannot place pending without an
    error, so the job names it (with the cluster's free CPUs) after train.placement_timeout_s, and not
    the actors that started; an actor whose __init__ raised fails the wait with that error. (The whole
    job failing this way, its reward app deleted: tests/test_grpo_job.py, `make test-e2e`.)"""
    import ray

    job = job_module("train_grpo")

    @ray.remote
    class Idle:
        pass

    @ray.remote
    class Broken:
        def __init__(self):
            raise ValueError("no model at /nowhere")

    placed, pending, broken = Idle.options(num_cpus=0).remote(), Idle.options(num_cpus=64).remote(), Broken.options(num_cpus=0).remote()
    try:
        with pytest.raises(RuntimeError, match=r"^Idle \(num_cpus=64\) not started within 2 s \(train.placement_timeout_s\)\. "
                                               r"[\d.]+ of the cluster's [\d.]+ CPUs are free") as raised:
            job.wait_started({"Idle (num_cpus=0)": placed, "Idle (num_cpus=64)": pending}, 2)
        assert "num_cpus=0" not in str(raised.value)
        with pytest.raises(Exception, match="no model at /nowhere"):
            job.wait_started({"Broken": broken}, 60)
    finally:
        for actor in (placed, pending, broken):
            ray.kill(actor)
