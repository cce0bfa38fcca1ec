"""Serving pieces that need no Ray cluster: config loading and checks, deployment options
(autoscaling, CPU / GPU / tensor-parallel resources), question recovery, dedup and the LRU cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrm_ray import prompts
from genrm_ray.config import ConfigError
from genrm_ray.serving.config import deployment_options, engine_options, load_serve_config
from genrm_ray.serving.dedup import LRUCache, unique
from genrm_ray.serving.schemas import RequestError, recover_question
from tests.configs import HERE as TEST_CONFIGS
from tests.configs import shipped

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [p for p in shipped("serve") if "applications" not in p.read_text()] + [TEST_CONFIGS / "serve_test.yaml"]


@pytest.fixture
def ckpt(tmp_path) -> str:
    """A training run dir: its config records the task; only the export's HF marker is checked before Ray starts."""
    return str(_run_dir(tmp_path / "run", "job_config.json", {"data": {"task": {"name": "last_letter"}}}, "genrm/hf_model"))


@pytest.mark.parametrize("name", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_map_to_serve_options(name, ckpt):
    cfg = load_serve_config(name, [f"checkpoint={ckpt}"])
    opts = deployment_options(cfg)
    auto = opts["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (cfg.deployment.min_replicas, cfg.deployment.max_replicas)
    assert auto["upscale_delay_s"] == cfg.deployment.upscale_delay_s and opts["max_ongoing_requests"] == cfg.deployment.max_ongoing_requests
    assert cfg.http.host == "127.0.0.1"
    assert "trust_remote_code" not in engine_options(cfg)


def test_gpu_tensor_parallel_uses_placement_group_bundles(ckpt):
    cfg = load_serve_config(REPO / "configs" / "serve" / "gpu.yaml", [f"checkpoint={ckpt}", "engine.tensor_parallel_size=4"])
    opts = deployment_options(cfg)
    assert opts["placement_group_bundles"] == [{"CPU": 1.0}] + [{"GPU": 1}] * 4
    assert opts["placement_group_strategy"] == "STRICT_PACK" and opts["ray_actor_options"]["num_gpus"] == 0
    assert engine_options(cfg)["distributed_executor_backend"] == "ray"
    single = deployment_options(load_serve_config(REPO / "configs" / "serve" / "gpu.yaml", [f"checkpoint={ckpt}"]))
    assert single["ray_actor_options"]["num_gpus"] == 1 and "placement_group_bundles" not in single


def test_trust_remote_code_only_when_configured(ckpt):
    cfg = load_serve_config(REPO / "configs" / "serve" / "cpu.yaml", [f"checkpoint={ckpt}", "engine.trust_remote_code=true"])
    assert engine_options(cfg)["trust_remote_code"] is True


@pytest.mark.parametrize("override,message", [
    ("scoring.task=chess", "scoring.task"),
    ("scoring.cot.k=99", "scoring.cot.k"),
    ("deployment.max_replicas=0", "deployment.max_replicas"),
    ("engine.tensor_parallel_size=2", "accelerator=gpu"),
    ("scoring.cache_size=-1", "scoring.cache_size"),
    ("scoring.cot.temperature=0", "scoring.cot.temperature: .*max_k=32"),
    ("deployment.max_replicass=2", "unknown config key"),
])
def test_bad_serve_configs_fail_naming_the_key(override, message, ckpt):
    with pytest.raises(ConfigError, match=message):
        load_serve_config(REPO / "configs" / "serve" / "cpu.yaml", [f"checkpoint={ckpt}", override])


def test_checkpoint_must_be_a_saved_model(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        load_serve_config(REPO / "configs" / "serve" / "cpu.yaml", [f"checkpoint={tmp_path}"])
    with pytest.raises(ConfigError, match="checkpoint: not set"):
        load_serve_config(REPO / "configs" / "serve" / "cpu.yaml")


@pytest.mark.integration  # imports Ray Serve
def test_build_app_takes_config_path_and_dotted_args(ckpt):
    from genrm_ray.serving.app import build_app

    app = build_app({"config": str(REPO / "configs" / "serve" / "cpu.yaml"), "checkpoint": ckpt, "deployment.max_replicas": "3"})
    deployment = app._bound_deployment
    assert deployment.name == "GenRMReward" and deployment._deployment_config.autoscaling_config.max_replicas == 3


@pytest.mark.parametrize("name", CONFIGS, ids=lambda p: p.name)
def test_the_injection_defence_is_on_unless_turned_off_to_measure_it(name, ckpt):
    assert load_serve_config(name, [f"checkpoint={ckpt}"]).scoring.neutralize is True
    off = load_serve_config(name, [f"checkpoint={ckpt}", "scoring.neutralize=false"])
    assert off.scoring.neutralize is False


def test_question_is_recovered_from_a_solve_prompt_or_taken_bare():
    q = 'Take the last letters of the words in "ab cd" and concatenate them.'
    assert recover_question("last_letter", prompts.solve_prompt("last_letter", q)) == q
    assert recover_question("last_letter", prompts.solve_prompt("last_letter", q).rstrip("\n")) == q
    assert recover_question("last_letter", f"  {q}\n") == q
    with pytest.raises(RequestError, match="solve prompt of task 'arithmetic'"):
        recover_question("last_letter", prompts.solve_prompt("gsm8k", "1+1?"))
    with pytest.raises(RequestError, match="does not end with"):
        recover_question("last_letter", prompts.instruction("last_letter") + "\n\nQ: abc")


def test_unique_keeps_first_seen_order_and_maps_back():
    keys, where = unique(["a", "b", "a", "c", "b"])
    assert keys == ["a", "b", "c"] and where == [0, 1, 0, 2, 1]
    assert [keys[i] for i in where] == ["a", "b", "a", "c", "b"]


def test_lru_cache_evicts_least_recently_used():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2
    off = LRUCache(0)
    off.put("a", 1)
    assert off.get("a") is None and len(off) == 0


def _run_dir(root: Path, config_name: str, config: dict, export: str) -> Path:
    """A run folder as a job leaves it: its config (which names the task) and a model export."""
    (root / export).mkdir(parents=True)
    (root / export / "config.json").write_text("{}")
    (root / config_name).write_text(json.dumps(config))
    return root


def test_a_run_is_served_under_the_task_it_recorded(tmp_path):
    genrm = _run_dir(tmp_path / "demo", "job_config.json", {"data": {"task": {"name": "arithmetic"}}}, "genrm/hf_model")
    grpo = _run_dir(tmp_path / "grpo", "grpo_config.json", {"task": {"name": "word_sort"}}, "hf_model")
    default = REPO / "configs" / "serve" / "cpu.yaml"
    assert load_serve_config(default, [f"checkpoint={genrm}"]).scoring.task == "arithmetic"
    assert load_serve_config(default, [f"checkpoint={genrm / 'genrm' / 'hf_model'}"]).scoring.task == "arithmetic"
    assert load_serve_config(default, [f"checkpoint={grpo}"]).scoring.task == "word_sort"
    # The operator's setting wins (a verifier may be served for a neighbouring task on purpose).
    assert load_serve_config(default, [f"checkpoint={genrm}", "scoring.task=last_letter"]).scoring.task == "last_letter"


def test_an_export_that_records_no_task_needs_scoring_task(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    ckpt = str(tmp_path)
    with pytest.raises(ConfigError, match="scoring.task: not set, and .* records its task"):
        load_serve_config(REPO / "configs" / "serve" / "cpu.yaml", [f"checkpoint={ckpt}"])
    assert load_serve_config(REPO / "configs" / "serve" / "cpu.yaml", [f"checkpoint={ckpt}", "scoring.task=gsm8k"]).scoring.task == "gsm8k"
