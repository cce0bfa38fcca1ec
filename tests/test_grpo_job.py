"""jobs/train_grpo.py end to end on a test-sized config: a few GRPO steps with rewards from the
session's served GenRM (handle and HTTP), checkpoints, resume, and bad input failing before Ray."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobs import train_grpo  # noqa: E402

TEST_CONFIG = str(REPO / "configs" / "grpo_test.yaml")


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_grpo_steps_with_served_genrm_then_resume(ray_cluster, reward_server, tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "grpo"
    common = [f"models.policy={tiny_model_dir}", f"run_dir={run_dir}", f"reward.app_name={reward_server.app_name}"]
    assert train_grpo.main(["--config", TEST_CONFIG, *common]) == 0
    logged = rows(run_dir)
    assert [x["step"] for x in logged] == [0, 1, 2, 3]
    assert [x["step"] for x in logged if "pass_at_1" in x] == [0, 2, 3]  # step 0, every 2, and the last
    for x in logged[1:]:
        assert 0.0 <= x["reward_mean"] <= 1.0
        assert x["k_used"] == 2  # genrm_cot with k=2 from the config, as the server reported it
        assert x["response_tokens"] > 0
        assert x["rollout_s"] > 0 and x["update_s"] > 0
        assert x["kl"] >= 0.0
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_2", "step_3"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3 and (Path(summary["hf_model"]) / "config.json").is_file()
    assert (run_dir / "grpo_curves.png").stat().st_size > 0

    # Resume: a longer run in the same dir starts after the last checkpoint, not from scratch.
    assert train_grpo.main(["--config", TEST_CONFIG, *common, "train.steps=4"]) == 0
    assert "resumed from" in capsys.readouterr().out
    logged = rows(run_dir)
    assert [x["step"] for x in logged] == [0, 1, 2, 3, 4]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_grpo_over_http_direct_without_kl(ray_cluster, reward_server, tiny_model_dir, tmp_path, monkeypatch):
    """The same loop with the endpoint reached over HTTP (bearer token from the environment) and no
    KL term (kl_coef=0: no reference actor)."""
    monkeypatch.setenv("GENRM_REWARD_TOKEN", reward_server.token)
    run_dir = tmp_path / "grpo-http"
    assert train_grpo.main(["--config", TEST_CONFIG, f"models.policy={tiny_model_dir}", f"run_dir={run_dir}",
                            f"reward.url={reward_server.base_url}", "reward.source=genrm_direct",
                            "train.kl_coef=0", "train.steps=1"]) == 0
    (step1,) = [x for x in rows(run_dir) if x["step"] == 1]
    assert step1["kl"] == 0.0
    assert step1["k_used"] == 1  # direct GenRM: one verdict per item, no rationales (as the server reports it)


@pytest.mark.parametrize("override, message", [
    ("reward.source=magic", "reward.source"),
    ("train.zero_stage=1", "train.zero_stage must be 2 or 3"),
    ("task.eval_split=test", "reserved for Best-of-N"),
    ("rollout.group_size=1", "rollout.group_size must be >= 2"),
    ("rollout.prompts_per_step=5", "multiple of rollout.chunks"),
    ("models.policy=/nonexistent", "not a Hugging Face model dir"),
])
def test_bad_config_fails_before_ray(override, message, tiny_model_dir, capsys):
    args = ["--config", TEST_CONFIG, f"models.policy={tiny_model_dir}", "reward.source=oracle", override]
    assert train_grpo.main(args) == 2
    assert message in capsys.readouterr().err


def test_missing_from_run_names_the_fix(tmp_path, capsys):
    assert train_grpo.main(["--config", TEST_CONFIG, f"models.from_run={tmp_path}"]) == 2
    assert "train the verifier first with jobs/train_genrm.py" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("grpo_*.yaml")), ids=lambda p: p.name)
def test_every_grpo_config_file_loads(path):
    from genrm_ray.config import load_config
    from genrm_ray.rl.config import GRPOConfig

    cfg = load_config(GRPOConfig, path)  # unknown keys / wrong types fail here
    assert cfg.rollout.group_size >= 2 and cfg.task.eval_split != "test"
