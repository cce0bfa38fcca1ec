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


# --- storage: the same run read from a mounted path and from a URI (file:// is a URI pyarrow opens the
# way it opens s3:// and gs://; no cloud bucket is reachable here) --------------------------------

def _stored_run(tiny_model_dir, root: Path) -> Path:
    """A GenRM run as jobs/train_genrm.py leaves it in storage: summary.json and genrm/hf_model."""
    from genrm_ray import runs

    run = root / "runs" / "genrm-x"
    runs.upload_dir(Path(tiny_model_dir), run / "genrm" / "hf_model")
    runs.write_text(run / "summary.json", json.dumps({"data": {"policy": str(tiny_model_dir)},
                                                      "task": {"name": "last_letter", "options": {}}}))
    return run


def test_a_run_in_storage_resolves_the_same_by_path_and_by_uri(tiny_model_dir, tmp_path):
    from genrm_ray import runs

    run = _stored_run(tiny_model_dir, tmp_path / "shared")
    uri = f"file://{run}"
    assert resolve_model_dir(run, "checkpoint") == run / "genrm" / "hf_model"
    assert resolve_model_dir(uri, "checkpoint") == f"{uri}/genrm/hf_model"
    assert resolve_policy_dir(uri, "models.policy") == Path(tiny_model_dir)
    assert RunDir(uri).is_genrm_run() and runs.is_file(f"{uri}/summary.json")
    with pytest.raises(RunDirError, match="checkpoint: file:///nowhere is neither"):
        resolve_model_dir("file:///nowhere", "checkpoint")
    with pytest.raises(runs.StorageError, match="storage: cannot open nosuchscheme://bucket"):
        runs.filesystem("nosuchscheme://bucket/x")


def test_a_uri_export_is_copied_once_into_this_nodes_cache(tiny_model_dir, tmp_path, monkeypatch):
    from genrm_ray import runs

    monkeypatch.setenv("GENRM_CACHE_DIR", str(tmp_path / "node-cache"))
    run = _stored_run(tiny_model_dir, tmp_path / "shared")
    export = f"file://{run}/genrm/hf_model"
    local = runs.local_model_dir(export)
    assert local.is_relative_to(tmp_path / "node-cache") and is_hf_model_dir(local)
    assert sorted(p.name for p in local.iterdir() if not p.name.startswith(".")) == sorted(p.name for p in Path(tiny_model_dir).iterdir())
    assert runs.local_model_dir(export) == local  # same files: the same copy
    runs.write_text(f"{export}/config.json", (Path(tiny_model_dir) / "config.json").read_text() + "\n")  # a new export
    assert runs.local_model_dir(export) != local
    assert runs.local_model_dir(run / "genrm" / "hf_model") == run / "genrm" / "hf_model"  # a mounted path is used in place
    with pytest.raises(RunDirError, match="checkpoint: file://.* is not a Hugging Face model dir"):
        runs.local_model_dir(f"file://{tmp_path}")


def test_serving_reads_a_run_from_storage_and_replicas_load_a_local_copy(tiny_model_dir, tmp_path, monkeypatch):
    from genrm_ray.serving.config import deployment_options, load_serve_config, model_dir

    monkeypatch.setenv("GENRM_CACHE_DIR", str(tmp_path / "node-cache"))
    run = _stored_run(tiny_model_dir, tmp_path / "shared")
    by_path = load_serve_config(None, [f"checkpoint={run}"])
    assert by_path.checkpoint == str(run / "genrm" / "hf_model") and by_path.model_name == "genrm-x"
    assert by_path.scoring.task == "last_letter"  # summary.json in storage records it (no job_config.json there)
    assert model_dir(by_path) == run / "genrm" / "hf_model"
    by_uri = load_serve_config(None, [f"checkpoint=file://{run}", "deployment.resources={serve_node: 1}"])
    assert by_uri.checkpoint == f"file://{run}/genrm/hf_model" and by_uri.model_name == "genrm-x"
    assert model_dir(by_uri).is_relative_to(tmp_path / "node-cache")
    assert deployment_options(by_uri)["ray_actor_options"] == {"num_cpus": 1.0, "resources": {"serve_node": 1.0}}
