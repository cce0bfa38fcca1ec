"""genrm_ray.runs: a model path may name the model folder or a run folder holding one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrm_ray.runs import RunDir, RunDirError, is_hf_model_dir, require_hf_model_dir, resolve_model_dir, resolve_policy_dir


def test_run_dirs_resolve_to_their_hf_export(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    (run / "genrm").mkdir(parents=True)
    (run / "genrm" / "hf_model").symlink_to(tiny_model_dir)
    assert resolve_model_dir(str(run), "x") == run / "genrm" / "hf_model"
    assert resolve_model_dir(str(run / "genrm"), "x") == run / "genrm" / "hf_model"
    assert resolve_model_dir(str(tiny_model_dir), "x") == Path(tiny_model_dir)
    with pytest.raises(RunDirError, match="models.policy: .* names no policy"):
        resolve_policy_dir(str(run), "models.policy")  # never the run's GenRM export
    # A GenRM run dir given as the policy means the policy that run was trained from.
    (run / "summary.json").write_text(json.dumps({"data": {"policy": str(tiny_model_dir)}}))
    assert resolve_policy_dir(str(run), "models.policy") == Path(tiny_model_dir)
    assert RunDir(run).policy() == Path(tiny_model_dir) and RunDir(run).hf_model() == run / "genrm" / "hf_model"
    with pytest.raises(RunDirError, match="x: .* neither a Hugging Face model dir nor a run dir"):
        resolve_policy_dir(str(tmp_path), "x")


def test_a_grpo_run_dir_is_its_own_policy(tiny_model_dir, tmp_path):
    # A GRPO run's summary has no data section: its hf_model/ is the policy, not a GenRM run's verifier.
    run = tmp_path / "grpo"
    run.mkdir()
    (run / "hf_model").symlink_to(tiny_model_dir)
    (run / "summary.json").write_text(json.dumps({"reward_source": "oracle", "hf_model": str(run / "hf_model")}))
    assert resolve_policy_dir(run, "models.policy") == run / "hf_model"


def test_require_hf_model_dir_names_the_key(tmp_path, tiny_model_dir):
    assert is_hf_model_dir(tiny_model_dir) and not is_hf_model_dir(tmp_path)
    assert require_hf_model_dir(tiny_model_dir, "k") == Path(tiny_model_dir)
    with pytest.raises(RunDirError, match="model.path: .* is not a Hugging Face model dir"):
        require_hf_model_dir(tmp_path, "model.path")
