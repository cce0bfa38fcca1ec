"""Short versions of the reliability scripts (benchmarks/serve_load.py runs the long ones): under
sustained load from 16 clients the reward app scales 1 -> 2 replicas, loses no request when a
replica is killed (clients retry as documented in docs/serving.md), and scales back to 1 after.

Uses the session's reward app (tests/configs/serve_test.yaml: max 2 replicas, upscale 2 s, downscale 8 s).
"""

from __future__ import annotations

import random
import threading

import pytest

from genrm_ray.serving.loadtest import kill_one_replica, run_load, wait_for_replicas
from genrm_ray.tasks import get_task

pytestmark = pytest.mark.slow


def bodies(seed: int = 0):
    task = get_task("last_letter")
    rng = random.Random(seed)
    pairs = [(p.question, c.solution) for p in task.generate("test", 40, seed=seed)
             for c in task.candidate_solutions(p, 4, rng)]

    def make(i: int) -> dict:
        r = random.Random(i)
        return {"items": [{"prompt": q, "response": s} for q, s in r.sample(pairs, 8)], "mode": "cot", "k": 2}

    return make


@pytest.mark.e2e  # minutes of scaling up, a kill and scaling down: `make test-e2e`, out of CI's 45 minutes
def test_autoscales_up_survives_a_replica_kill_and_scales_down(reward_server):
    app, dep = reward_server.app_name, reward_server.cfg.deployment.name
    # Earlier tests share this app and their load may have scaled it up: start from one replica.
    wait_for_replicas(app, dep, 1, timeout_s=120)
    stop, result = threading.Event(), {}
    load = threading.Thread(target=lambda: result.update(report=run_load(
        reward_server.base_url + "/v1/rewards", bodies(), clients=16, total=None, headers=reward_server.headers, stop=stop)))
    load.start()
    try:
        upscale_s = wait_for_replicas(app, dep, 2, timeout_s=180)
        killed = kill_one_replica(app, dep)
        noticed_s = wait_for_replicas(app, dep, 2, timeout_s=60, below=True)  # the controller sees it die
        recovery_s = noticed_s + wait_for_replicas(app, dep, 2, timeout_s=180)  # and starts a new one
    finally:
        stop.set()
        load.join()
    report = result["report"]
    print(f"upscale {upscale_s:.1f} s, killed {killed}, recovered in {recovery_s:.1f} s, load: {report.to_dict()}")
    assert report.failures == 0, report.errors
    assert report.requests > 16 and report.items == 8 * report.requests
    downscale_s = wait_for_replicas(app, dep, 1, timeout_s=120)
    print(f"downscale to 1 replica after {downscale_s:.1f} s")



@pytest.mark.parametrize("where,when", [("local", "deploying"), ("cluster", "serving")])
def test_serve_job_stops_gracefully_on_sigterm(where, when, ray_cluster, tiny_model_dir):
    """jobs/serve_genrm.py exits 0 through its shutdown path on SIGTERM. Local, while the replicas are
    still loading: ray.init installed a SIGTERM handler that exits at once, so the job's own must be in
    place by then; afterwards the HTTP port is closed. On a cluster, once serving: the job deletes its
    app, and only it; the cluster stays up."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from ray import serve

    from tests.fixtures.ray_cluster import free_port

    repo = Path(__file__).resolve().parents[1]
    app, port = "genrm-signal-test", free_port()
    args = [sys.executable, str(repo / "jobs" / "serve_genrm.py"), "--checkpoint", str(tiny_model_dir),
            "--config", str(repo / "tests" / "configs" / "serve_test.yaml"), f"http.app_name={app}",
            "http.route_prefix=/signal-test", f"http.port={port}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if where == "cluster":
        args += ["--address", ray_cluster.address]
        env |= ray_cluster.env
    proc = subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any(line.startswith(when + " ") for line in lines):
            assert proc.poll() is None, f"serve_genrm.py exited before {when!r}:\n" + "".join(lines[-40:])
            assert time.monotonic() < deadline, f"serve_genrm.py did not report {when!r} within 240 s"
            time.sleep(0.2)
        if when == "serving":
            assert serve.status().applications[app].status == "RUNNING"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, "".join(lines[-40:])
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    assert "shutting down\n" in lines
    assert "SIGTERM: stopping\n" in lines
    if where == "cluster":
        assert app not in serve.status().applications
    else:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "the job's HTTP proxy still listens after exit"
