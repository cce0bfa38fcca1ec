#!/usr/bin/env python
"""Serve a trained GenRM checkpoint as a reward endpoint (Ray Serve + vLLM), until Ctrl-C / SIGTERM.

    python jobs/serve_genrm.py --checkpoint runs/<run>                # a training run dir, or its HF export
    python jobs/serve_genrm.py --checkpoint DIR --config configs/serve/gpu.yaml deployment.max_replicas=4
    RAY_ADDRESS=<head>:6379 python jobs/serve_genrm.py --checkpoint DIR     # on a running cluster

Routes (docs/serving.md): POST /v1/rewards, POST /get_reward (OpenRLHF), GET /healthz, GET /v1/models.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genrm_ray import launch  # noqa: E402  (first: project caches + offline settings)
from genrm_ray.serving.config import load_serve_config  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "serve" / "cpu.yaml"


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", help="the GenRM: a training run dir or its HF export; same as checkpoint=DIR")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster address (default: start a local one)")


def main(argv: list[str] | None = None) -> int:
    args = launch.parse_args(__doc__, DEFAULT_CONFIG, argv, add_arguments)
    overrides = ([f"checkpoint={args.checkpoint}"] if args.checkpoint else []) + list(args.overrides)
    try:
        if not Path(args.config).is_file():
            raise launch.InputError(f"--config: no such file {args.config}")
        cfg = load_serve_config(args.config, overrides)
    except launch.BAD_INPUT as e:
        launch.fail(e)

    import ray
    from ray import serve
    from ray.serve.exceptions import RayServeException

    from genrm_ray.serving.app import deploy

    # SIGINT/SIGTERM only set an event: ray.init installed a SIGTERM handler that exits at once, and an
    # exception raised from a handler inside Ray's Cython calls crashes the process, so ours replace it
    # and the deploy (serve.run polls until every replica runs: minutes for a large model) runs in a
    # thread. A signal during the deploy or while serving leads to the same cleanup below.
    launch.connect_ray(args.address, log_to_driver=False)
    wake, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def on_signal(signum: int, _frame) -> None:
        if stop.is_set():  # a second signal: give up on the graceful path
            raise SystemExit(128 + signum)
        print(f"{signal.Signals(signum).name}: stopping", flush=True)
        stop.set()
        wake.set()

    def start() -> None:
        try:
            deploy(cfg)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failure.append(e)
        wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    print(f"deploying {cfg.http.app_name!r}: replicas load the model (Ctrl-C aborts)", flush=True)
    threading.Thread(target=start, name="deploy", daemon=True).start()
    wake.wait()
    if not stop.is_set() and not failure:
        url = f"http://{cfg.http.host}:{cfg.http.port}{cfg.http.route_prefix.rstrip('/')}"
        print(f"serving {cfg.checkpoint} as {cfg.model_name!r} at {url} (POST /v1/rewards, /get_reward); "
              "Ctrl-C stops", flush=True)
        stop.wait()
    # Graceful: Serve stops routing new requests, lets in-flight ones finish (graceful_shutdown_timeout_s),
    # then the replicas stop their engines.
    print("shutting down", flush=True)
    try:
        serve.delete(cfg.http.app_name)
    except RayServeException:  # the signal came before the deploy started Serve: no app to delete
        pass
    finally:
        if args.address is None:
            serve.shutdown()
        ray.shutdown()
    if failure and not stop.is_set():
        print(f"error: the reward app did not start: {failure[0]!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
