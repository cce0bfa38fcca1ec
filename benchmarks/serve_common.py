"""Shared setup of the serving scripts: a local Ray on loopback, a checkpoint, the reward app."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Token auth with a throwaway token for this script's own cluster (never ~/.ray/auth_token); set
# before anything imports ray, which reads the auth mode once.
_TOKEN = Path(tempfile.mkdtemp(prefix="ray-auth-")) / "auth_token"
_TOKEN.write_text(secrets.token_hex(32))
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(_TOKEN)

import genrm_ray.env  # noqa: E402

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ray(num_cpus: int = 4) -> None:
    """A fresh local Ray on loopback (token auth, see above)."""
    import ray

    ray.init(num_cpus=num_cpus, num_gpus=0, include_dashboard=True, dashboard_host="127.0.0.1",
             dashboard_port=free_port(), _node_ip_address="127.0.0.1", log_to_driver=False)


def checkpoint(path: str | None) -> str:
    """The given checkpoint, or a tiny random-init model made once under the cache (no hub here)."""
    if path:
        return path
    from genrm_ray.env import cache_dir
    from genrm_ray.models import create_tiny_model
    from genrm_ray.runs import is_hf_model_dir

    out = cache_dir() / "bench" / "tiny_genrm"
    if not is_hf_model_dir(out):
        create_tiny_model(out, size="tiny", seed=0)
    return str(out)


def deploy(cfg) -> tuple[str, object]:
    """Run the reward app on a free loopback port; (base URL, handle) once /healthz answers."""
    import requests
    from ray.serve.context import _get_global_client

    from genrm_ray.serving.app import deploy as deploy_app

    handle = deploy_app(cfg, port=free_port())
    port = _get_global_client().http_config.port  # the first start's port stands on a redeploy
    base = f"http://127.0.0.1:{port}{cfg.http.route_prefix.rstrip('/')}"
    while requests.get(base + "/healthz", timeout=30).status_code != 200:
        time.sleep(0.5)
    return base, handle


def pairs(n_problems: int, per_problem: int, seed: int = 0, task: str = "last_letter") -> list[tuple[str, str]]:
    """(question, solution) pairs of the task's test problems: its own right and wrong candidates."""
    import random

    from genrm_ray.tasks import get_task

    task, rng = get_task(task), random.Random(seed)
    return [(p.question, c.solution) for p in task.generate("test", n_problems, seed=seed)
            for c in task.candidate_solutions(p, per_problem, rng)]


def write_results(path: str | Path, results: dict, script: str) -> None:
    """``results`` with the command that made them and the machine, as JSON at ``path``."""
    import json

    out = {"command": " ".join(["python", script, *sys.argv[1:]]), "machine": genrm_ray.env.machine_record(), **results}
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
