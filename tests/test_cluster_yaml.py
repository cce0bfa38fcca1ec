"""cluster.yaml passes Ray's own cluster-launcher validation (the one `ray up` runs) and describes
the cluster the docs promise: a CPU head, autoscaling 8-GPU workers, the project's `gpu` extra."""

from __future__ import annotations

import copy
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
