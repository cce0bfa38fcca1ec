#!/usr/bin/env python
"""Serve a trained GenRM checkpoint as a reward endpoint (Ray Serve + vLLM), until Ctrl-C / SIGTERM.

    python jobs/serve_genrm.py --checkpoint runs/<run>/genrm
    python jobs/serve_genrm.py --checkpoint DIR --config configs/serve_gpu.yaml deployment.max_replicas=4
    RAY_ADDRESS=<head>:6379 python jobs/serve_genrm.py --checkpoint DIR     # on a running cluster

Routes (docs/serving.md): POST /v1/rewards, POST /get_reward (OpenRLHF), GET /healthz, GET /v1/models.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import genrm_ray.env  # noqa: E402

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load
from genrm_ray.config import ConfigError  # noqa: E402
from genrm_ray.serving.config import load_serve_config  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "serve_cpu.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="GenRM checkpoint dir (HF format); same as checkpoint=DIR")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="serve YAML config (default: configs/serve_cpu.yaml)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster address (default: start a local one)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. http.port=8100 deployment.max_replicas=2")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = ([f"checkpoint={args.checkpoint}"] if args.checkpoint else []) + list(args.overrides)
    try:
        cfg = load_serve_config(args.config, overrides)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import ray
    from ray import serve

    from genrm_ray.serving.app import deploy

    ray.init(address=args.address, log_to_driver=False)
    deploy(cfg)
    url = f"http://{cfg.http.host}:{cfg.http.port}{cfg.http.route_prefix.rstrip('/')}"
    print(f"serving {cfg.checkpoint} as {cfg.model_name!r} at {url} (POST /v1/rewards, /get_reward); Ctrl-C stops",
          flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    # Graceful: Serve stops routing new requests, lets in-flight ones finish (graceful_shutdown_timeout_s),
    # then the replicas stop their engines.
    print("shutting down", flush=True)
    serve.delete(cfg.http.app_name)
    if args.address is None:
        serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
