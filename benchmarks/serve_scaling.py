#!/usr/bin/env python
"""Scaling curves of the reward path: rewards/s and p99 latency against concurrent clients (direct
p(Yes) over HTTP, one replica), and rewards/s and latency against K (GenRM-CoT, the engine in-process).

    python benchmarks/serve_scaling.py --checkpoint DIR --config configs/serve/cpu.yaml --set scoring.task=arithmetic \\
        --set engine.extra.cpu_threads_bind=all --out benchmarks/results/serve_scaling_smollm2.json
    python benchmarks/serve_scaling.py --quick --out /tmp/scaling.json      # tiny model, small sizes

Clients: for each count c in ``--clients``, c clients post ``--requests-per-client`` x c requests of
``--items`` items each. K: for each K in ``--ks``, one request of ``--k-items`` items scored with K
rationales of at most ``--k-tokens`` tokens. Every point scores its own items, so the engine's prefix
cache never serves a whole prompt from an earlier point. Writes the JSON (``--out``) and a PNG next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from serve_common import REPO, checkpoint, deploy, pairs, start_ray

import genrm_ray.env


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [(results["clients"], "clients", "concurrent clients (HTTP, direct p(Yes))", "p99_s", "p99 latency (s)"),
              (results["k"], "k", "K rationales per item (GenRM-CoT, in-process)", "latency_s", "request latency (s)")]
    for ax, (points, x, xlabel, latency, latency_label) in zip(axes, panels):
        xs = [pt[x] for pt in points]
        ax.plot(xs, [pt["rewards_per_s"] for pt in points], "o-", color="C0")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("rewards/s", color="C0")
        ax.grid(alpha=0.3)
        right = ax.twinx()
        right.plot(xs, [pt[latency] for pt in points], "s--", color="C3")
        right.set_ylabel(latency_label, color="C3")
        for side in (ax, right):
            side.set_ylim(bottom=0)  # a flat throughput curve should look flat
    fig.suptitle(f"reward path scaling: {Path(results['checkpoint']).name}, {results['machine']['cpus']} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="GenRM run dir or HF export (default: a tiny random-init model)")
    p.add_argument("--config", default=str(REPO / "tests" / "configs" / "serve_test.yaml"), help="serve config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="serve config override")
    p.add_argument("--clients", default="1,2,4,8,16,32")
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--items", type=int, default=2)
    p.add_argument("--ks", default="1,2,4,8,16")
    p.add_argument("--k-items", type=int, default=2)
    p.add_argument("--k-tokens", type=int, default=96)
    p.add_argument("--quick", action="store_true", help="tiny model, clients 1,2 and K 1,2, for the test suite")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_scaling.json"))
    args = p.parse_args()
    if args.quick:
        args.clients, args.ks, args.k_tokens = "1,2", "1,2", 16
    clients, ks = [int(c) for c in args.clients.split(",")], [int(k) for k in args.ks.split(",")]

    from genrm_ray.scoring import CotConfig, GenRMScorer, VerifyItem
    from genrm_ray.serving.config import engine_options, load_serve_config

    fixed = ["deployment.min_replicas=1", "deployment.max_replicas=1", f"deployment.max_ongoing_requests={max(clients)}",
             "scoring.cache_size=0", "scoring.dedup=false", f"scoring.max_k={max(*ks, 32)}", "http.auth_token_env=", *args.set]
    cfg = load_serve_config(args.config, [f"checkpoint={checkpoint(None if args.quick else args.checkpoint)}", *fixed])
    ckpt, task = cfg.checkpoint, cfg.scoring.task
    pool = pairs(600, 4, task=task)
    cursor = iter(range(10**9))

    def fresh(n: int) -> list[tuple[str, str]]:
        """The next n items nobody has scored yet (wrapping only past the whole pool)."""
        return [pool[next(cursor) % len(pool)] for _ in range(n)]

    results: dict = {"command": "python benchmarks/serve_scaling.py " + " ".join(sys.argv[1:]), "checkpoint": ckpt,
                     "task": task, "engine_options": engine_options(cfg), "items_per_request": args.items,
                     "k_items": args.k_items, "k_tokens": args.k_tokens}

    async def k_curve() -> list[dict]:
        from genrm_ray.engine import AsyncVLLMBackend

        backend = AsyncVLLMBackend(ckpt, **engine_options(cfg))
        scorer = GenRMScorer(backend)
        await scorer.ascore_direct([VerifyItem(task, q, s) for q, s in fresh(2)])  # warm-up
        out = []
        for k in ks:
            items = [VerifyItem(task, q, s) for q, s in fresh(args.k_items)]
            t = time.perf_counter()
            scores = await scorer.ascore_cot(items, CotConfig(k=k, max_rationale_tokens=args.k_tokens, seed=0))
            wall = time.perf_counter() - t
            tokens = sum(s.rationale_tokens for s in scores)
            out.append({"k": k, "latency_s": round(wall, 2), "rewards_per_s": round(len(items) / wall, 3),
                        "rationale_tokens": tokens, "generated_tokens_per_s": round(tokens / wall, 1)})
            print(out[-1], flush=True)
        backend.close()
        return out

    results["k"] = asyncio.run(k_curve())

    from ray import serve

    from genrm_ray.serving.loadtest import run_load

    start_ray()
    url, _ = deploy(cfg)
    run_load(url + "/v1/rewards", lambda i: {"items": [{"prompt": q, "response": s} for q, s in fresh(args.items)]},
             clients=1, total=2)  # warm-up
    results["clients"] = []
    for c in clients:
        bodies = [{"items": [{"prompt": q, "response": s} for q, s in fresh(args.items)]}
                  for _ in range(c * args.requests_per_client)]
        rep = run_load(url + "/v1/rewards", bodies.__getitem__, clients=c, total=len(bodies))
        results["clients"].append({"clients": c, "requests": rep.requests, "failures": rep.failures,
                                   "rewards_per_s": round(rep.rewards_per_s, 2), "p50_s": round(rep.p50_s, 3),
                                   "p99_s": round(rep.p99_s, 3)})
        print(results["clients"][-1], flush=True)
    serve.shutdown()
    results["machine"] = genrm_ray.env.machine_record()
    out = Path(args.out)
    out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
