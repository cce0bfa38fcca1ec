#!/usr/bin/env python
"""Rewards/s of the reward endpoint vs the engine in-process vs a naive transformers baseline, and
the effect of n=K prefix sharing, of in-request dedup and of the reward cache. One run, one
machine, one model.

    python benchmarks/serve_throughput.py [--checkpoint DIR] [--requests 200] [--concurrency 16] [--items 32]
    python benchmarks/serve_throughput.py --checkpoint runs/demo --config configs/serve/cpu.yaml \\
        --set scoring.task=arithmetic --smollm2-sizes --out benchmarks/results/serve_throughput_smollm2.json
    python benchmarks/serve_throughput.py --quick --out /tmp/q.json      # tiny model, a minute or two

Everything uses the serve config's engine options and task (``--config``, ``--set key=value``), so
the in-process engine is the replica's engine.
Direct p(Yes) at saturation (``--concurrency`` requests of ``--items`` items in flight):
  engine   GenRMScorer over AsyncVLLMBackend in this process (no Serve, no HTTP)
  http     POST /v1/rewards on a 1-replica app
  handle   DeploymentHandle.score from this driver
  naive    GenRMScorer over the transformers backend, one item at a time
GenRM-CoT at saturation (k = ``--cot-k``, the served config's rationale budget): engine in-process vs
HTTP vs handle, ``--cot-requests`` requests of ``--cot-items`` items.
Prefix sharing: CoT at k = ``--share-k`` as n=K in one engine request (prompt computed once) vs K
requests of n=1 (in-process), and the naive transformers CoT scorer one item at a time at the same
k (``--naive-cot-items``; 0 skips it).
GRPO-shaped load over HTTP: groups of 8 answers to one question (3 distinct answers per question,
questions drawn from ``--grpo-prompts``), dedup on/off and the reward cache on/off; rewards/s, p50, p99.
Writes benchmarks/results/serve_throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import time

from serve_common import REPO, checkpoint, deploy, pairs, start_ray, write_results


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
            "rewards_per_s": round(n_requests * items / wall, 2)}


# Sizes for SmolLM2-135M on the 2-core CPU (direct ~1.4 items/s, CoT ~40 generated tokens/s): each
# phase takes one to three minutes.
SMOLLM2_SIZES = dict(requests=12, concurrency=4, items=8, naive_items=24, cot_requests=4, cot_items=2,
                     share_items=4, share_tokens=96, naive_cot_items=2, grpo_requests=16)
QUICK_SIZES = dict(requests=4, concurrency=2, items=4, naive_items=4, cot_requests=2, cot_items=2,
                   share_items=2, share_tokens=16, naive_cot_items=1, grpo_requests=4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="GenRM run dir or HF export (default: a tiny random-init model)")
    p.add_argument("--config", default=str(REPO / "tests" / "configs" / "serve_test.yaml"), help="serve config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="serve config override")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--items", type=int, default=32)
    p.add_argument("--naive-items", type=int, default=200)
    p.add_argument("--cot-requests", type=int, default=48)
    p.add_argument("--cot-items", type=int, default=16)
    p.add_argument("--cot-k", type=int, default=4)
    p.add_argument("--share-k", type=int, default=4)
    p.add_argument("--share-items", type=int, default=64)
    p.add_argument("--share-tokens", type=int, default=64, help="rationale budget of the prefix-sharing runs")
    p.add_argument("--naive-cot-items", type=int, default=0)
    p.add_argument("--grpo-requests", type=int, default=50)
    p.add_argument("--grpo-prompts", type=int, default=8)
    p.add_argument("--smollm2-sizes", action="store_true", help="sizes for a 135M model on 2 cores (--share-k 8)")
    p.add_argument("--quick", action="store_true", help="tiny model and sizes, for the test suite")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_throughput.json"))
    args = p.parse_args()
    if args.smollm2_sizes or args.quick:
        vars(args).update(SMOLLM2_SIZES if args.smollm2_sizes else QUICK_SIZES)
        args.share_k = 8 if args.smollm2_sizes else 4
    ckpt = checkpoint(None if args.quick else args.checkpoint)

    from genrm_ray.scoring import CotConfig, GenRMScorer, VerifyItem
    from genrm_ray.serving.config import engine_options, load_serve_config

    fixed = ["deployment.min_replicas=1", "deployment.max_replicas=1", f"deployment.max_ongoing_requests={args.concurrency}",
             "scoring.cache_size=0", "scoring.dedup=false", f"scoring.max_items={max(args.items, 64)}",
             f"scoring.max_k={max(args.cot_k, args.share_k, 8)}", "http.auth_token_env=", *args.set]
    cfg = load_serve_config(args.config, [f"checkpoint={ckpt}", *fixed])
    ckpt = cfg.checkpoint  # a run dir resolves to its HF export, which the in-process engines load too
    task, engine = cfg.scoring.task, engine_options(cfg)
    # Every phase scores its own items: the engine's prefix cache keeps whole prompts, so a phase that
    # re-sent the items of the phase before would be served from it. Consecutive candidates share their
    # question, as a GRPO group does, in every phase alike.
    pool = pairs(300, 4, task=task)
    groups = [pool[j : j + 4] for j in range(0, len(pool), 4)]  # one problem's 4 candidates
    phases = ["engine", "http", "handle", "warmup", "nK_shared", "n1_split"]
    parts = {name: [x for g in groups[k :: len(phases)] for x in g] for k, name in enumerate(phases)}
    served_cot = dataclasses.replace(cfg.scoring.cot, k=args.cot_k)
    share = CotConfig(k=args.share_k, max_rationale_tokens=args.share_tokens, seed=0)
    results: dict = {
        "checkpoint": ckpt, "task": task, "engine_options": engine, "concurrency": args.concurrency, "items_per_request": args.items,
        "cot_saturation": {"k": args.cot_k, "max_rationale_tokens": served_cot.max_rationale_tokens,
                           "requests": args.cot_requests, "items_per_request": args.cot_items},
        "prefix_sharing": {"k": args.share_k, "max_rationale_tokens": args.share_tokens, "items": args.share_items},
    }

    def verify_items(chosen: list[tuple[str, str]]) -> list:
        return [VerifyItem(task, q, s) for q, s in chosen]

    def batch(i: int, phase: str) -> list[tuple[str, str]]:
        """Request i of a direct phase: the next ``items`` of the phase's items (from the front)."""
        part = parts[phase]
        return [part[(i * args.items + j) % len(part)] for j in range(args.items)]

    def cot_batch(i: int, phase: str) -> list[tuple[str, str]]:
        """Request i of a CoT phase: taken from the back of the phase's items."""
        part = parts[phase][::-1]
        return [part[(i * args.cot_items + j) % len(part)] for j in range(args.cot_items)]

    # 1. The engine in-process: direct and CoT at saturation, and n=K sharing on/off.
    async def in_process():
        from genrm_ray.engine import AsyncVLLMBackend

        t = time.perf_counter()
        backend = AsyncVLLMBackend(ckpt, **engine)
        out = {"engine_load_s": round(time.perf_counter() - t, 1)}
        scorer = GenRMScorer(backend)
        await scorer.ascore_direct(verify_items(batch(0, "warmup")))
        out["engine"] = await saturate(lambda i: scorer.ascore_direct(verify_items(batch(i, "engine"))),
                                       args.requests, args.concurrency, args.items)
        print({"engine": out["engine"]}, flush=True)
        out["cot_engine"] = await saturate(lambda i: scorer.ascore_cot(verify_items(cot_batch(i, "engine")), served_cot),
                                           args.cot_requests, args.concurrency, args.cot_items)
        print({"cot_engine": out["cot_engine"]}, flush=True)
        for name, sc in [("nK_shared", scorer), ("n1_split", GenRMScorer(SplitN(backend)))]:
            t = time.perf_counter()
            share_items = verify_items(parts[name][: args.share_items])  # the same problems' kind, not the same items
            scores = await sc.ascore_cot(share_items, share)
            wall = time.perf_counter() - t
            out[name] = {"wall_s": round(wall, 2), "rewards_per_s": round(len(share_items) / wall, 3),
                         "rationale_tokens": sum(s.rationale_tokens for s in scores),
                         "generated_tokens_per_s": round(sum(s.rationale_tokens for s in scores) / wall, 1)}
            print({name: out[name]}, flush=True)
        backend.close()
        return out

    inproc = asyncio.run(in_process())
    results["engine_load_s"], results["engine"] = inproc["engine_load_s"], inproc["engine"]
    ps = results["prefix_sharing"]
    ps["nK_shared"], ps["n1_split"] = inproc["nK_shared"], inproc["n1_split"]
    ps["speedup"] = round(ps["n1_split"]["wall_s"] / ps["nK_shared"]["wall_s"], 3)

    # 2. The naive transformers baseline, one item at a time: direct, and CoT at the sharing runs' k.
    from genrm_ray.engine import HFBackend

    hf = GenRMScorer(HFBackend(ckpt, dtype="float32"))
    items = verify_items(parts["engine"][: args.naive_items])  # transformers caches nothing across calls
    t = time.perf_counter()
    for it in items:
        hf.score_direct([it])
    wall = time.perf_counter() - t
    results["naive_hf_one_at_a_time"] = {"items": len(items), "wall_s": round(wall, 2), "rewards_per_s": round(len(items) / wall, 2)}
    results["engine"]["vs_naive_hf"] = round(results["engine"]["rewards_per_s"] / results["naive_hf_one_at_a_time"]["rewards_per_s"], 2)
    print({"naive_hf_one_at_a_time": results["naive_hf_one_at_a_time"]}, flush=True)
    if args.naive_cot_items:
        items = verify_items(parts["nK_shared"][: args.naive_cot_items])
        t = time.perf_counter()
        tokens = sum(hf.score_cot([it], share)[0].rationale_tokens for it in items)
        wall = time.perf_counter() - t
        naive = {"items": len(items), "wall_s": round(wall, 2), "rewards_per_s": round(len(items) / wall, 3),
                 "rationale_tokens": tokens, "generated_tokens_per_s": round(tokens / wall, 1)}
        ps["naive_hf_one_at_a_time"] = naive
        ps["engine_vs_naive_hf"] = round(ps["nK_shared"]["rewards_per_s"] / naive["rewards_per_s"], 2)
        print({"naive_hf_cot": naive}, flush=True)
    del hf

    # 3. Serve: HTTP and handle, one replica.
    from ray import serve

    from genrm_ray.serving.loadtest import run_load

    start_ray()
    url, handle = deploy(cfg)

    def served(body, requests: int, items: int, warmup: int, engine_figure: dict) -> dict:
        """HTTP and handle at saturation (``requests`` bodies, ``args.concurrency`` in flight), each
        as a fraction of the in-process figure; ``body(i, phase)``."""
        run_load(url + "/v1/rewards", lambda i: body(i, "warmup"), clients=min(4, args.concurrency), total=warmup)
        rep = run_load(url + "/v1/rewards", lambda i: body(i, "http"), clients=args.concurrency, total=requests)
        http = {"requests": rep.requests, "failures": rep.failures, "items": rep.items, "wall_s": round(rep.wall_s, 2),
                "rewards_per_s": round(rep.rewards_per_s, 2), "p50_s": round(rep.p50_s, 3), "p99_s": round(rep.p99_s, 3)}

        async def via_handle():
            return await saturate(lambda i: handle.score.remote(body(i, "handle")), requests, args.concurrency, items)

        out = {"http": http, "handle": asyncio.run(via_handle())}
        for k in ("http", "handle"):
            out[k]["vs_engine"] = round(out[k]["rewards_per_s"] / engine_figure["rewards_per_s"], 3)
        return out

    def body(i: int, phase: str) -> dict:
        return {"items": [{"prompt": q, "response": s} for q, s in batch(i, phase)]}

    results.update(served(body, args.requests, args.items, warmup=2, engine_figure=results["engine"]))
    print({k: results[k] for k in ("http", "handle")}, flush=True)

    def cot_body(i: int, phase: str) -> dict:
        return {"items": [{"prompt": q, "response": s} for q, s in cot_batch(i, phase)], "mode": "cot", "k": args.cot_k}

    c = results["cot_saturation"]
    c["engine"] = inproc["cot_engine"]
    c.update(served(cot_body, args.cot_requests, args.cot_items, warmup=1, engine_figure=c["engine"]))
    print({"cot_saturation": c}, flush=True)

    # 4. GRPO-shaped load: a group of 8 answers to one question with repeats (3 distinct), questions
    # recurring across requests as prompts do across GRPO steps; dedup and the reward cache on/off.
    questions = sorted({q for q, _ in pool})[: args.grpo_prompts]
    answers = {q: [s for qq, s in pool if qq == q][:3] for q in questions}

    def grpo(i: int) -> dict:
        r = random.Random(i)
        q = r.choice(questions)
        return {"items": [{"prompt": q, "response": r.choice(answers[q])} for _ in range(8)], "mode": "direct"}

    grpo_out = {"group_size": 8, "distinct_answers_per_group": 3, "prompts": len(questions), "mode": "direct",
                "requests": args.grpo_requests}
    for name, dedup, cache in [("dedup_off_cache_off", False, 0), ("dedup_on_cache_off", True, 0), ("dedup_on_cache_on", True, 4096)]:
        cfg_g = load_serve_config(args.config, [f"checkpoint={ckpt}", *fixed, f"scoring.dedup={str(dedup).lower()}",
                                                f"scoring.cache_size={cache}"])
        url, handle = deploy(cfg_g)
        rep = run_load(url + "/v1/rewards", grpo, clients=args.concurrency, total=args.grpo_requests)
        grpo_out[name] = {"failures": rep.failures, "rewards_per_s": round(rep.rewards_per_s, 2),
                          "p50_s": round(rep.p50_s, 3), "p99_s": round(rep.p99_s, 3)}
        print({name: grpo_out[name]}, flush=True)
    results["grpo_load"] = grpo_out
    serve.shutdown()
    print(json.dumps(results, indent=1))
    write_results(args.out, results, "benchmarks/serve_throughput.py")


if __name__ == "__main__":
    main()
