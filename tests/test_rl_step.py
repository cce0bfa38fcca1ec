"""The GRPO step's pure helpers (genrm_ray.rl.step), without Ray: the step's prompts, its metrics, the
checkpoint layout and the summary. The step itself runs on actors in tests/test_grpo_job.py."""

from __future__ import annotations

import json

import pytest

from genrm_ray.rl.grpo import Rollout
from genrm_ray.rl.step import (
    ScoredRollouts,
    latest_checkpoint,
    mean_or,
    problems_for_step,
    run_summary,
    save_checkpoint,
    step_metrics,
)
from genrm_ray.tasks import get_task


def test_problems_of_a_step_depend_on_seed_and_step_only():
    problems = get_task("last_letter").generate("train", 20, seed=0)
    a = problems_for_step(problems, seed=1, step=3, n=4)
    assert len(a) == 4 and len({p.id for p in a}) == 4
    assert problems_for_step(problems, seed=1, step=3, n=4) == a  # a resumed run: the same batch
    assert problems_for_step(problems, seed=1, step=4, n=4) != a
    assert problems_for_step(problems, seed=2, step=3, n=4) != a


def test_step_metrics_hand_computed():
    groups = [[Rollout("a", [1, 2, 3], [0], True), Rollout("", [2], [0], True)],
              [Rollout("b", [1, 2], [0], False), Rollout("c", [4, 5, 6, 7], [0], True)]]
    details = [{"k_used": 2}, {"k_used": 0, "blank": True}, {"k_used": 2}, {"k_used": 4}]
    scored = ScoredRollouts(groups, [0.5, 0.0, 1.0, 0.25], details, rollout_s=2.0, reward_wait_s=0.5)
    m = step_metrics(7, scored, [True, False, False, True], {"loss": 0.1, "kl": 0.02, "grad_norm": 3.0}, update_s=1.5)
    assert m == {
        "step": 7, "reward_mean": pytest.approx(1.75 / 4), "train_accuracy": 0.5, "kl": 0.02, "loss": 0.1,
        "clip_frac": 0.0, "grad_norm": 3.0, "response_tokens": 2.5, "unfinished": 0.25, "empty_responses": 1,
        "k_used": 2.0, "reward_on_correct": pytest.approx(0.375), "reward_on_wrong": 0.5,
        "reward_auroc": 0.5,  # positives 0.5, 0.25 against negatives 0.0, 1.0: 2 of 4 pairs ordered
        "rollout_s": 2.0, "reward_wait_s": 0.5, "update_s": 1.5,
    }
    all_wrong = step_metrics(1, scored, [False] * 4, {"loss": 0.0}, 0.0)
    assert all_wrong["reward_on_correct"] == -1.0 and all_wrong["train_accuracy"] == 0.0
    assert all_wrong["reward_auroc"] == -1.0


def test_mean_or():
    assert mean_or([1.0, 2.0]) == 1.5
    assert mean_or([]) == -1.0 and mean_or([], default=0.0) == 0.0


class FakePolicy:
    """What save_checkpoint asks of the PolicyGroup: a DeepSpeed checkpoint written under a tag."""

    def save_checkpoint(self, directory: str, tag: str) -> None:
        from pathlib import Path

        Path(directory, tag).mkdir(parents=True)


def test_checkpoints_count_only_when_complete(tmp_path):
    assert latest_checkpoint(tmp_path) == (0, None)
    for step, elapsed in ((2, 10.0), (10, 55.5)):
        folder = save_checkpoint(FakePolicy(), tmp_path, step, elapsed)
        assert folder == tmp_path / "checkpoints" / f"step_{step}" and (folder / f"step_{step}").is_dir()
    assert json.loads((tmp_path / "checkpoints" / "step_10" / "state.json").read_text()) == {"step": 10, "elapsed_s": 55.5}
    (tmp_path / "checkpoints" / "step_12").mkdir()  # a save that died before state.json
    assert latest_checkpoint(tmp_path) == (10, tmp_path / "checkpoints" / "step_10")  # by number, not by name


def test_run_summary_from_metrics_rows(tmp_path):
    rows = [{"step": 0, "pass_at_1": 0.1, "elapsed_s": 0.0}, {"step": 1, "reward_mean": 0.5, "elapsed_s": 3.0},
            {"step": 2, "pass_at_1": 0.25, "elapsed_s": 7.0}]
    s = run_summary(rows, "oracle", tmp_path / "hf_model")
    assert s == {"reward_source": "oracle", "pass_at_1_start": 0.1, "pass_at_1_end": 0.25, "gain": pytest.approx(0.15),
                 "steps": 2, "elapsed_s": 7.0, "hf_model": str(tmp_path / "hf_model")}
    with pytest.raises(ValueError, match="no held-out pass@1"):
        run_summary(rows[1:2], "oracle", tmp_path)
