"""cluster.yaml passes Ray's own cluster-launcher validation (the one `ray up` runs) and describes
the cluster the docs promise: a CPU head, autoscaling 8-GPU workers, the project's `gpu` extra."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"


def _validate(config: dict) -> dict:
    """What `ray up` does before it talks to the cloud: fill in the provider's defaults, then
    check the result against ray-schema.json and Ray's cross-field rules."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.mark.integration  # imports Ray's cluster launcher
def test_cluster_yaml_passes_ray_validation(cluster_config):
    prepared = _validate(cluster_config)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cluster_has_cpu_head_and_autoscaling_8_gpu_workers(cluster_config):
    types = cluster_config["available_node_types"]
    head = types[cluster_config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0, "training workers must not land on the head"
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    assert len(gpu_types) == 1
    workers = gpu_types[0]
    assert workers["resources"]["GPU"] == 8
    assert 0 <= workers["min_workers"] < workers["max_workers"] <= cluster_config["max_workers"]


def test_setup_installs_gpu_extra_and_start_commands_use_it(cluster_config):
    setup = " ".join(cluster_config["setup_commands"])
    assert "[gpu]" in setup and "genrm-ray" in setup
    assert "--no-deps -r \"$HOME/genrm-ray/requirements/gpu.lock.txt\"" in setup  # the locked versions, not a resolve
    # The same interpreter must run Ray and the jobs: both start commands use the venv's ray.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("venv/bin/ray start" in c for c in cluster_config[key]), key
    assert any("--head" in c for c in cluster_config["head_start_ray_commands"])


@pytest.mark.integration
@pytest.mark.parametrize(
    "breakage",
    ["misspelled_node_config", "unknown_top_level_key", "head_type_not_defined",
     "min_workers_exceed_max_workers"],
)
def test_broken_copies_fail_ray_validation(cluster_config, breakage):
    bad = copy.deepcopy(cluster_config)
    gpu = bad["available_node_types"]["gpu_8x_h100"]
    if breakage == "misspelled_node_config":
        gpu["node_cofig"] = gpu.pop("node_config")
    elif breakage == "unknown_top_level_key":
        bad["max_wokers"] = 3
    elif breakage == "head_type_not_defined":
        bad["head_node_type"] = "no_such_type"
    elif breakage == "min_workers_exceed_max_workers":
        gpu["min_workers"] = bad["max_workers"] + 1
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _validate(bad)


# --- cluster.yaml and the GPU configs agree: shared storage, one task, paths as overrides ------------

REPO = CLUSTER_YAML.parent
GPU_CONFIGS = sorted({*REPO.glob("configs/*/*gpu*.yaml"), *REPO.glob("configs/train/genrm_1p5b_*.yaml")})
MOUNT = "/mnt/shared"


def test_every_node_mounts_the_shared_storage_the_configs_name(cluster_config):
    setup = " ".join(cluster_config["setup_commands"])  # run on the head and on every worker
    assert "/mnt/shared" in setup and "mount -t nfs4" in setup and "mountpoint -q /mnt/shared" in setup
    # The placeholder fails the setup with a message, instead of a node without its storage.
    assert "EFS=fs-REPLACE-ME" in setup and "exit 1" in setup
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(cluster_config[key])
        assert "GENRM_HUB=https://huggingface.co" in start and f"HF_HOME={MOUNT}/hf" in start, key
    header = CLUSTER_YAML.read_text().split("cluster_name:")[0]
    for name in re.findall(r"configs/[\w./-]+\.yaml", header):
        assert (REPO / name).is_file(), f"cluster.yaml names {name}, which does not exist"


def test_gpu_configs_share_one_task_and_take_machine_paths_as_overrides():
    from genrm_ray.config import load_config
    from genrm_ray.evaluation.config import EvalConfig
    from genrm_ray.genrm_job import GenRMJobConfig
    from genrm_ray.serving.config import ServeConfig

    assert len(GPU_CONFIGS) >= 4, GPU_CONFIGS
    tasks = {}
    for path in GPU_CONFIGS:
        text = path.read_text()
        body = "\n".join(line.split("#")[0] for line in text.splitlines())  # values, not comments
        assert "/home/" not in body and MOUNT not in body, f"{path.name}: a machine path in a value; make it an override"
        if path.parent.name == "train":
            cfg = load_config(GenRMJobConfig, path)
            tasks[path.name] = cfg.data.task.name
            assert cfg.storage == "" and cfg.run_dir == "" and cfg.data.task.file == ""
            header = text.split("\ndata:")[0]
            for key in ("storage", "data.cache_dir", "data.task.file"):  # the command in the header gives them
                assert re.search(rf"\b{re.escape(key)}={MOUNT}/", header), f"{path.name}: header has no {key}={MOUNT}/..."
        elif path.parent.name == "eval":
            tasks[path.name] = load_config(EvalConfig, path).problems.task
        elif path.parent.name == "serve":
            tasks[path.name] = load_config(ServeConfig, path).scoring.task
    assert set(tasks.values()) == {"gsm8k"}, tasks


def test_a_gpu_config_on_a_machine_without_a_hub_stops_before_ray_naming_the_setting(tmp_path):
    # Its base model is a hub id; here no hub is configured (GENRM_HUB unset): exit 2, one line.
    import os
    import subprocess
    import sys

    from tests.fixtures.data import GSM8K_HEAD

    env = {k: v for k, v in os.environ.items() if k not in ("GENRM_HUB", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc = subprocess.run([sys.executable, "jobs/train_genrm.py", "--config", "configs/train/genrm_1p5b_zero2_1x8gpu.yaml",
                           f"data.task.file={GSM8K_HEAD}", "data.task.n_train=150", "data.task.n_heldout=50",
                           f"data.cache_dir={tmp_path / 'data'}", f"storage={tmp_path / 'shared'}", f"run_dir={tmp_path / 'run'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.base_model.path: 'Qwen/Qwen2.5-1.5B'" in proc.stderr and "GENRM_HUB is unset" in proc.stderr
    assert "Traceback" not in proc.stderr and "[ray]" not in proc.stdout  # Ray never started
