#!/usr/bin/env python
"""Reliability of the reward endpoint: load, a replica killed under load, autoscaling 1 -> 2 -> 1.

    python benchmarks/serve_load.py [--checkpoint DIR] [--requests 1000] [--clients 16]

(1) ``--clients`` clients post ``--requests`` requests (8 items each, direct p(Yes), cache off): no failures,
one reward per item, p50/p99 latency, rewards/s; the app autoscales 1 -> 2 replicas meanwhile
(tests/configs/serve_test.yaml: upscale after 2 s over 2 ongoing requests per replica).
(2) Under a second load, one replica is killed; clients retry as documented (docs/serving.md);
Serve replaces the replica: recovery time = kill -> 2 replicas running again.
(3) After the load, the app scales back to 1 replica (downscale delay 8 s).
Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time

from serve_common import REPO, checkpoint, deploy, pairs, start_ray


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_load.json"))
    args = p.parse_args()

    from genrm_ray.serving.config import load_serve_config
    from genrm_ray.serving.loadtest import kill_one_replica, run_load, running_replicas, wait_for_replicas

    start_ray()
    cfg = load_serve_config(REPO / "tests" / "configs" / "serve_test.yaml", [f"checkpoint={checkpoint(args.checkpoint)}",
                                                                     "scoring.cache_size=0"])  # every item hits the engine
    url, _ = deploy(cfg)
    app, dep = cfg.http.app_name, cfg.deployment.name
    pool = pairs(60, 4)

    def body(i: int) -> dict:
        return {"items": [{"prompt": q, "response": s} for q, s in random.Random(i).sample(pool, 8)]}

    # (1) load; watch the replica count while it runs
    seen, stop_watch = [], threading.Event()

    def watch() -> None:
        t0 = time.monotonic()
        while not stop_watch.is_set():
            seen.append((round(time.monotonic() - t0, 2), running_replicas(app, dep)))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    load = run_load(url + "/v1/rewards", body, clients=args.clients, total=args.requests)
    stop_watch.set()
    watcher.join()
    upscale_at = next((t for t, n in seen if n >= 2), None)
    print(f"load: {load.to_dict()}\nreached 2 replicas after {upscale_at} s of load", flush=True)

    # (2) kill a replica under load (make sure 2 run first, so load keeps one going)
    if running_replicas(app, dep) < 2:
        warm = threading.Event()
        t = threading.Thread(target=run_load, args=(url + "/v1/rewards", body), kwargs=dict(clients=args.clients, total=None, stop=warm))
        t.start()
        wait_for_replicas(app, dep, 2, timeout_s=300)
        warm.set()
        t.join()
    stop, result = threading.Event(), {}
    t = threading.Thread(target=lambda: result.update(r=run_load(url + "/v1/rewards", body, clients=args.clients, total=None, stop=stop)))
    t.start()
    time.sleep(5)
    killed_at = time.monotonic()
    killed = kill_one_replica(app, dep)
    wait_for_replicas(app, dep, 2, timeout_s=60, below=True)
    wait_for_replicas(app, dep, 2, timeout_s=300)
    recovery_s = time.monotonic() - killed_at
    time.sleep(5)
    stop.set()
    t.join()
    kill_load = result["r"]
    print(f"killed {killed}; 2 replicas again after {recovery_s:.1f} s; load meanwhile: {kill_load.to_dict()}", flush=True)

    # (3) scale down once idle
    downscale_s = wait_for_replicas(app, dep, 1, timeout_s=300)
    print(f"back to 1 replica {downscale_s:.1f} s after the load stopped", flush=True)

    out = {"config": "tests/configs/serve_test.yaml", "clients": args.clients, "load": load.to_dict(),
           "replicas_seen": seen[::4], "upscale_to_2_after_s": upscale_at,
           "kill": {"replica": killed, "recovery_s": round(recovery_s, 1), "load": kill_load.to_dict()},
           "downscale_to_1_after_s": round(downscale_s, 1)}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
