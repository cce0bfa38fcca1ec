#!/usr/bin/env python
"""Rewards/s of the reward endpoint vs the engine in-process vs a naive transformers baseline, and
the effect of n=K prefix sharing and of in-request dedup. One run, one machine, one model.

    python benchmarks/serve_throughput.py [--checkpoint DIR] [--requests 200] [--concurrency 16] [--items 32]

Direct p(Yes) at saturation (``--concurrency`` requests of ``--items`` items in flight):
  engine   GenRMScorer over AsyncVLLMBackend in this process (no Serve, no HTTP)
  http     POST /v1/rewards on a 1-replica app (same engine options)
  handle   DeploymentHandle.score from this driver
  naive    GenRMScorer over the transformers backend, one item at a time
GenRM-CoT at saturation (k=4, the served app's CoT settings): engine in-process vs HTTP vs handle,
``--cot-requests`` requests of ``--cot-items`` items.
CoT (k=4): n=K in one engine request (prefix computed once) vs K requests of n=1 (in-process);
dedup on/off through HTTP on GRPO-like requests (groups of 8 answers with repeats).
Writes benchmarks/results/serve_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import time

from serve_common import REPO, checkpoint, deploy, pairs, start_ray

# Same engine options as the served app (configs/serve_test.yaml: a seeded config turns chunked prefill off on CPU).
ENGINE = dict(dtype="float32", max_model_len=2048, seed=0, enforce_eager=True, enable_chunked_prefill=False)


class SplitN:
    """Backend view that turns one n=K request into K requests of n=1 (no n=K sharing; the engine's
    prefix cache can still reuse the prompt's KV blocks across them)."""

    def __init__(self, backend):
        self.backend, self.tokenizer = backend, backend.tokenizer

    async def generate(self, prompts_, *, n=1, seed=None, **kw):
        outs = await asyncio.gather(*(self.backend.generate(prompts_, n=1, seed=None if seed is None else seed + 7919 * j, **kw)
                                      for j in range(n)))
        return [[c for o in outs for c in o[i]] for i in range(len(prompts_))]

    async def next_token_logprobs(self, prompts_, token_ids):
        return await self.backend.next_token_logprobs(prompts_, token_ids)


async def saturate(call, n_requests: int, concurrency: int, items: int) -> dict:
    """Run ``call(i)`` for i < n_requests with ``concurrency`` in flight; rewards/s."""
    counter = iter(range(n_requests))

    async def worker():
        for i in counter:
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {"requests": n_requests, "items": n_requests * items, "wall_s": round(wall, 2),
            "rewards_per_s": round(n_requests * items / wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--items", type=int, default=32)
    p.add_argument("--naive-items", type=int, default=200)
    p.add_argument("--cot-requests", type=int, default=48)
    p.add_argument("--cot-items", type=int, default=16)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_throughput.json"))
    args = p.parse_args()
    ckpt = checkpoint(args.checkpoint)
    pool = pairs(100, 4)
    results: dict = {"checkpoint": ckpt, "concurrency": args.concurrency, "items_per_request": args.items}

    from genrm_ray.scoring import CotConfig, GenRMScorer, VerifyItem
    from genrm_ray.serving.config import load_serve_config

    fixed = ["deployment.min_replicas=1", "deployment.max_replicas=1", f"deployment.max_ongoing_requests={args.concurrency}",
             "scoring.cache_size=0", "scoring.dedup=false", f"scoring.max_items={max(args.items, 64)}", "http.auth_token_env="]
    cfg = load_serve_config(REPO / "configs" / "serve_test.yaml", [f"checkpoint={ckpt}", *fixed])
    sc = cfg.scoring  # the served CoT settings; the in-process engine uses the same ones
    served_cot = dataclasses.replace(sc.cot, k=4)
    results["cot_saturation"] = {"k": 4, "max_rationale_tokens": sc.cot.max_rationale_tokens,
                                 "requests": args.cot_requests, "items_per_request": args.cot_items}

    def batch(i: int) -> list[tuple[str, str]]:
        return random.Random(i).sample(pool, args.items)

    def cot_batch(i: int) -> list[tuple[str, str]]:
        return random.Random(10_000 + i).sample(pool, args.cot_items)

    # 1. engine in-process, and n=K sharing on/off
    async def in_process():
        from genrm_ray.engine import AsyncVLLMBackend

        backend = AsyncVLLMBackend(ckpt, **ENGINE)
        scorer = GenRMScorer(backend)
        await scorer.ascore_direct([VerifyItem("last_letter", q, s) for q, s in batch(-1)])  # warm-up
        out = {"engine": await saturate(lambda i: scorer.ascore_direct([VerifyItem("last_letter", q, s) for q, s in batch(i)]),
                                        args.requests, args.concurrency, args.items)}
        out["cot_engine"] = await saturate(
            lambda i: scorer.ascore_cot([VerifyItem("last_letter", q, s) for q, s in cot_batch(i)], served_cot),
            args.cot_requests, args.concurrency, args.cot_items)
        cot_items = [VerifyItem("last_letter", q, s) for q, s in pool[:64]]
        settings = CotConfig(k=4, max_rationale_tokens=64, seed=0)
        for name, sc in [("cot_nK_shared", scorer), ("cot_n1_split", GenRMScorer(SplitN(backend)))]:
            t = time.perf_counter()
            scores = await sc.ascore_cot(cot_items, settings)
            wall = time.perf_counter() - t
            out[name] = {"items": len(cot_items), "k": 4, "wall_s": round(wall, 2),
                         "rewards_per_s": round(len(cot_items) / wall, 2),
                         "rationale_tokens": sum(s.rationale_tokens for s in scores)}
        backend.close()
        return out

    results.update(asyncio.run(in_process()))
    print(json.dumps(results, indent=1), flush=True)

    # 2. naive transformers baseline, one item at a time
    from genrm_ray.engine import HFBackend

    hf = GenRMScorer(HFBackend(ckpt, dtype="float32"))
    items = [VerifyItem("last_letter", q, s) for q, s in pool[: args.naive_items]]
    t = time.perf_counter()
    for it in items:
        hf.score_direct([it])
    wall = time.perf_counter() - t
    results["naive_hf_one_at_a_time"] = {"items": len(items), "wall_s": round(wall, 2), "rewards_per_s": round(len(items) / wall, 1)}
    print(results["naive_hf_one_at_a_time"], flush=True)

    # 3. Serve: HTTP and handle, one replica
    from ray import serve

    from genrm_ray.serving.loadtest import run_load

    start_ray()
    url, handle = deploy(cfg)

    def served(body, requests: int, items: int, warmup: int, engine: dict) -> dict:
        """HTTP and handle at saturation (``requests`` bodies, ``args.concurrency`` in flight), each
        as a fraction of the in-process ``engine`` figure."""
        run_load(url + "/v1/rewards", body, clients=4, total=warmup)
        rep = run_load(url + "/v1/rewards", body, clients=args.concurrency, total=requests)
        http = {"requests": rep.requests, "failures": rep.failures, "items": rep.items, "wall_s": round(rep.wall_s, 2),
                "rewards_per_s": round(rep.rewards_per_s, 1), "p50_s": round(rep.p50_s, 3), "p99_s": round(rep.p99_s, 3)}

        async def via_handle():
            return await saturate(lambda i: handle.score.remote(body(i)), requests, args.concurrency, items)

        out = {"http": http, "handle": asyncio.run(via_handle())}
        for k in ("http", "handle"):
            out[k]["vs_engine"] = round(out[k]["rewards_per_s"] / engine["rewards_per_s"], 3)
        return out

    def body(i: int) -> dict:
        return {"items": [{"prompt": q, "response": s} for q, s in batch(i)]}

    results.update(served(body, args.requests, args.items, warmup=8, engine=results["engine"]))
    results["engine"]["vs_naive_hf"] = round(results["engine"]["rewards_per_s"] / results["naive_hf_one_at_a_time"]["rewards_per_s"], 1)
    print({k: results[k] for k in ("http", "handle")}, flush=True)

    # GenRM-CoT at saturation: the same comparison where each item costs k rationales.
    def cot_body(i: int) -> dict:
        return {"items": [{"prompt": q, "response": s} for q, s in cot_batch(i)], "mode": "cot", "k": 4}

    c = results["cot_saturation"]
    c["engine"] = results.pop("cot_engine")
    c.update(served(cot_body, args.cot_requests, args.cot_items, warmup=4, engine=c["engine"]))
    print({"cot_saturation": c}, flush=True)

    # 4. dedup on/off: GRPO-like groups (8 answers to one question, 3 distinct), CoT k=2
    def grpo(i: int) -> dict:
        r = random.Random(i)
        q = r.choice(pool)[0]
        answers = [s for qq, s in pool if qq == q][:3]
        return {"items": [{"prompt": q, "response": r.choice(answers)} for _ in range(8)], "mode": "cot", "k": 2}

    for dedup in (True, False):
        cfg = load_serve_config(REPO / "configs" / "serve_test.yaml", [f"checkpoint={ckpt}", *fixed, f"scoring.dedup={str(dedup).lower()}"])
        url, handle = deploy(cfg)
        rep = run_load(url + "/v1/rewards", grpo, clients=args.concurrency, total=max(args.requests // 4, 32))
        results[f"grpo_cot_dedup_{'on' if dedup else 'off'}"] = {"requests": rep.requests, "failures": rep.failures,
                                                                  "rewards_per_s": round(rep.rewards_per_s, 1),
                                                                  "p50_s": round(rep.p50_s, 3)}
    serve.shutdown()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
