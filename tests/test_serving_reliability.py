"""Short versions of the reliability scripts (benchmarks/serve_load.py runs the long ones): under
sustained load from 16 clients the reward app scales 1 -> 2 replicas, loses no request when a
replica is killed (clients retry as documented in docs/serving.md), and scales back to 1 after.

Uses the session's reward app (configs/serve_test.yaml: max 2 replicas, upscale 2 s, downscale 8 s).
"""

from __future__ import annotations

import random
import threading

import pytest

from genrm_ray.serving.loadtest import kill_one_replica, run_load, running_replicas, wait_for_replicas
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


def test_autoscales_up_survives_a_replica_kill_and_scales_down(reward_server):
    app, dep = reward_server.app_name, reward_server.cfg.deployment.name
    assert running_replicas(app, dep) == 1
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
