"""genrm_ray.env: our own processes get the project caches and offline settings; a process that
only imports a client piece (an RL trainer loading an adapter) keeps its environment untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WATCHED = ["GENRM_CACHE_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HOME", "WANDB_MODE",
           "VLLM_CPU_KVCACHE_SPACE", "RAY_TMPDIR", "DS_ACCELERATOR"]


def _environment_after(code: str, **extra: str) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k not in WATCHED and k != "GENRM_HUB"} | extra
    script = f"import json, os\n{code}\nprint(json.dumps({{k: os.environ.get(k) for k in {WATCHED!r}}}))"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_client_imports_leave_the_environment_alone():
    seen = _environment_after("import genrm_ray, genrm_ray.reward_client, genrm_ray.integrations.trl, "
                              "genrm_ray.integrations.openrlhf, genrm_ray.integrations.verl")
    assert seen == {k: None for k in WATCHED}


def test_entry_points_get_project_caches_and_offline_settings():
    seen = _environment_after("import genrm_ray.env; genrm_ray.env.configure(entry_point=True)")
    assert seen["GENRM_CACHE_DIR"] == str(REPO / ".cache")
    assert seen["HF_HOME"] == str(REPO / ".cache" / "hf") and seen["HF_HUB_OFFLINE"] == "1"
    assert seen["WANDB_MODE"] == "offline" and seen["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert seen["TRANSFORMERS_OFFLINE"] == "1" and seen["HF_ENDPOINT"] is None


def test_deepspeed_imports_without_a_warning_on_a_cpu_build_of_torch():
    from importlib import metadata

    env = {k: v for k, v in os.environ.items() if k not in WATCHED}
    out = subprocess.run([sys.executable, "-c", "import genrm_ray.env; genrm_ray.env.configure(entry_point=True); "
                          "import deepspeed, os; print(os.environ.get('DS_ACCELERATOR'))"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    if metadata.version("torch").endswith("+cpu"):
        assert out.stdout.split() == ["cpu"]
        assert "unable to detect" not in out.stdout + out.stderr, out.stderr[-2000:]
    else:  # a CUDA build: DeepSpeed detects the accelerator itself
        assert out.stdout.split() == ["None"]


def test_a_configured_hub_is_the_one_setting_that_turns_offline_off():
    seen = _environment_after("import genrm_ray.env; genrm_ray.env.configure(entry_point=True)",
                              GENRM_HUB="https://hub.example.org/")
    assert seen["HF_HUB_OFFLINE"] is None and seen["TRANSFORMERS_OFFLINE"] is None
    assert seen["HF_ENDPOINT"] == "https://hub.example.org"
    assert seen["HF_HOME"] == str(REPO / ".cache" / "hf")  # the caches stay the project's


def test_release_free_memory_returns_a_freed_heap_to_the_os():
    # Tensors of a few MiB, allocated after a freed one raised glibc's mmap threshold, live on the heap;
    # freed, glibc keeps them (resident) until malloc_trim. The GRPO actors call this between phases.
    script = """
import json, torch
from genrm_ray.env import node_memory_used_gib, release_free_memory
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**30
kept, tensors = [], []
for i in range(200):
    t = torch.ones(2_000_000 + 1000 * i); del t
    tensors.append(torch.ones(2_000_000 + 1000 * i)); kept.append(torch.ones(1000))
del tensors
held = rss()
release_free_memory()
print(json.dumps({"held": held, "after": rss(), "node": node_memory_used_gib()}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["held"] - seen["after"] > 0.25, seen  # of the 1.6 GiB freed, glibc held 0.4 GiB here
    assert 0 < seen["node"] < 1024


def test_machine_record_names_the_cpu_and_the_load():
    from genrm_ray.env import cpu_has_fast_bf16, machine_record

    m = machine_record()
    assert m["cpus"] == os.cpu_count() and m["fast_bf16"] == cpu_has_fast_bf16()
    assert m["cpu"] and m["platform"] and len(m["load_average"]) == 3


@pytest.mark.integration
def test_a_local_ray_cluster_starts_with_token_auth_and_no_warning_on_the_console():
    """Ray turns token authentication on for a new local cluster and logs a WARNING saying so on every
    job's console; connect_ray drops that notice, and the cluster it starts runs tasks."""
    code = ("from genrm_ray import env\nenv.configure(entry_point=True)\nenv.connect_ray(num_cpus=1)\nimport ray\n"
            "from ray._raylet import AuthenticationMode, get_authentication_mode\n"
            "print('token auth', get_authentication_mode() == AuthenticationMode.TOKEN)\n"
            "print('task', ray.get(ray.remote(lambda: 42).remote()))\nray.shutdown()")
    child_env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "token auth True" in out.stdout and "task 42" in out.stdout, out.stdout
    assert "Token authentication is" not in out.stdout + out.stderr, out.stderr[-2000:]
