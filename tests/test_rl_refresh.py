"""Verifier refresh during GRPO (genrm_ray.rl.refresh, actors/verifier_actor.py, serving reload.actor):
the buffer turns graded rollouts into balanced D_verify examples; the trainer's refreshed weights reach
the served replicas in place, and the served reward then equals the library's on the refreshed export."""

from __future__ import annotations

import random

import pytest

from genrm_ray import prompts
from genrm_ray.rl.grpo import Rollout
from genrm_ray.rl.refresh import RefreshBuffer
from genrm_ray.tasks import get_task

TASK = "last_letter"


def graded_groups(n_problems: int, per_problem: int, seed: int = 0):
    """(problems, groups of Rollouts, flat grades): the task's own right and wrong candidates."""
    task, rng = get_task(TASK), random.Random(seed)
    problems = task.generate("train", n_problems, seed=seed)
    groups = [[Rollout(c.solution, [1], [1], True) for c in task.candidate_solutions(p, per_problem, rng)]
              for p in problems]
    graded = [task.is_correct(x.text, p) for p, g in zip(problems, groups) for x in g]
    return problems, groups, graded


def test_buffer_builds_balanced_examples_labelled_by_the_grader():
    task = get_task(TASK)
    problems, groups, graded = graded_groups(6, 4)
    assert 0 < sum(graded) < len(graded)
    buffer = RefreshBuffer()
    buffer.add(problems, groups, graded)
    buffer.add(problems[:1], groups[:1], graded[:len(groups[0])])  # a repeated step: the same pairs again
    records, stats = buffer.build(task, "direct", max_examples=6)
    assert stats["refresh_rollouts"] == len(graded) + len(groups[0]) and stats["refresh_distinct"] == len(graded)
    assert len(records) == stats["refresh_examples"] == 6 and sum(r.label for r in records) == 3
    by_id = {p.id: p for p in problems}
    for r in records:
        _, solution = prompts.parse_verify_direct_prompt(TASK, r.prompt)
        assert r.label == task.is_correct(solution, by_id[r.problem_id])  # the grader's label, not the reward's
        assert r.target == prompts.verdict_text(r.label)
    assert buffer.items == []  # emptied by build

    buffer.add(problems, groups, graded)
    cot, _ = buffer.build(task, "cot", max_examples=64)
    assert len(cot) > 0 and sum(r.label for r in cot) * 2 == len(cot)
    assert all(r.kind == "verify_cot" and r.target.endswith(prompts.verdict_text(r.label)) for r in cot)


def test_buffer_with_one_class_builds_nothing_and_checks_its_input():
    task = get_task(TASK)
    problems, groups, graded = graded_groups(3, 3)
    wrong_only = [(p, [x for x, ok in zip(g, grades) if not ok]) for p, g, grades in
                  zip(problems, groups, [graded[i:i + 3] for i in range(0, len(graded), 3)])]
    buffer = RefreshBuffer()
    for p, g in wrong_only:
        buffer.add([p], [g], [False] * len(g))
    records, stats = buffer.build(task, "direct", max_examples=8)
    assert records == [] and stats["refresh_examples"] == 0
    assert len(buffer.items) == stats["refresh_rollouts"] > 0  # kept for the next refresh
    with pytest.raises(ValueError, match="rollouts but"):
        buffer.add(problems, groups, graded[:-1])


@pytest.mark.slow
def test_served_replicas_load_the_refreshed_weights_in_place(ray_cluster, tiny_model_dir, tmp_path):
    """A trainer takes refresh steps; the app's replica (same process, no restart) scores with the new
    weights on its next request, and its reward equals the library's over the refreshed export."""
    import ray
    from ray import serve

    from actors.verifier_actor import VerifierActor
    from genrm_ray.data import sft
    from genrm_ray.engine import HFBackend
    from genrm_ray.rl.config import RefreshConfig
    from genrm_ray.rl.refresh import NAMESPACE, trainer_name
    from genrm_ray.scoring import GenRMScorer, VerifyItem
    from genrm_ray.serving.app import deploy
    from genrm_ray.serving.config import load_serve_config
    from genrm_ray.train.config import DeepSpeedConfig
    from tests.fixtures.ray_cluster import free_port
    from tests.fixtures.serving import SERVE_TEST_CONFIG

    app = "refresh-test"
    name = trainer_name(app)
    trainer = VerifierActor.options(name=name, namespace=NAMESPACE, num_cpus=0, max_concurrency=4).remote(
        str(tiny_model_dir), RefreshConfig(steps=3, lr=1e-2, micro_batch_size=4, deepspeed=DeepSpeedConfig(zero_stage=2, bf16=False)))
    cfg = load_serve_config(SERVE_TEST_CONFIG, [f"checkpoint={tiny_model_dir}", f"http.app_name={app}",
                                                f"http.route_prefix=/{app}", "deployment.num_cpus=0",
                                                "deployment.max_replicas=1", f"reload.actor={name}"])
    try:
        handle = deploy(cfg, port=free_port())
        problems, groups, graded = graded_groups(4, 4, seed=3)
        body = {"items": [{"prompt": p.question, "response": x.text} for p, g in zip(problems, groups) for x in g],
                "mode": "direct"}
        before = handle.score.remote(body).result()["rewards"]
        assert handle.current_weights_version.remote().result() == 0

        labelled = [sft.LabelledSolution(p, x.text, ok) for (p, x), ok in
                    zip([(p, x) for p, g in zip(problems, groups) for x in g], graded)]
        stats = ray.get(trainer.train.remote(sft.build_verify_direct(labelled, balance=True)))
        assert stats["verifier_version"] == 1 and stats["refresh_loss_after"] < stats["refresh_loss_before"]

        after = handle.score.remote(body).result()["rewards"]
        assert handle.current_weights_version.remote().result() == 1
        assert max(abs(a - b) for a, b in zip(after, before)) > 1e-3  # the weights did change what it says
        # The served reward after the refresh is the library's over the refreshed export.
        ray.get(trainer.save_hf.remote(str(tmp_path / "refreshed")))
        expected = GenRMScorer(HFBackend(tmp_path / "refreshed", dtype="float32")).score_direct(
            [VerifyItem(TASK, item["prompt"], item["response"]) for item in body["items"]])
        assert after == pytest.approx([x.reward for x in expected], abs=1e-3)
    finally:
        serve.delete(app)
        ray.kill(trainer)
