#!/usr/bin/env python
"""Rewards/s and latency of the reward server under the traffic the RL clients send, in one run.

    python benchmarks/client_traffic.py [--checkpoint DIR] [--prompts 32] [--group 8] [--max-ongoing 8 64]

The same kind of items (``--prompts`` last-letter problems x ``--group`` candidate solutions each,
direct p(Yes), a fresh seed per measurement so no item is a cache hit of an earlier one) go to one
local reward app (tests/configs/serve_test.yaml, 1 replica, auth off, 127.0.0.1), one deployment per
``--max-ongoing`` value (the deployment's ``max_ongoing_requests``: how many requests a replica lets
in at once, so how many one-sample requests its engine can batch), these ways in turn:

- ``batched``: ``RewardClient.ascore`` over all items (``/v1/rewards``, 64 items per request, the
  requests concurrent), as the GRPO loop, TRL and veRL's gathered ``compute_score_async`` send them;
  first and last, and the others are compared with the mean of the two (the machine's load drifts);
- ``single_handle`` / ``single_http`` (where the time goes): one item per request, every request at
  once, through the deployment handle (no HTTP proxy) / over one keep-alive HTTP session;
- ``openrlhf_http``: OpenRLHF 0.11.2's own ``SingleTurnAgentExecutor`` posting each sample to
  ``/get_reward``, one sample per request and a new connection each, every sample of every group at
  once (its engine actor runs all of a batch's executes concurrently; the generation is scripted,
  no GPU vLLM here);
- ``openrlhf_file``: the same executor calling ``genrm_ray/integrations/openrlhf.py`` per sample, in
  ``asyncio.to_thread`` (so at most the default executor's min(32, CPUs + 4) calls at once).

Per way: rewards/s (items / wall time), p50 / p99 of a sample's latency (its request's, from the
moment all samples are released), requests sent. Rewards must equal the batched ones for the same
items (checked, to 1e-4). Writes benchmarks/results/client_traffic.json with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from types import SimpleNamespace

from serve_common import REPO, checkpoint, deploy, start_ray, write_results

MAX_WALL_S = 600  # a measurement that runs longer is cut off and reported as such


def items(n_prompts: int, group: int, seed: int) -> list[tuple[str, str]]:
    """(solve prompt, response) pairs: ``group`` candidate solutions per problem, in group order."""
    import random

    from genrm_ray import prompts
    from genrm_ray.tasks import get_task

    task, rng = get_task("last_letter"), random.Random(seed)
    return [(prompts.solve_prompt("last_letter", p.question), c.solution)
            for p in task.generate("test", n_prompts, seed=seed) for c in task.candidate_solutions(p, group, rng)]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(name: str, n: int, wall_s: float, latencies: list[float], requests: int, **extra) -> dict:
    return {"way": name, "items": n, "wall_s": round(wall_s, 3), "rewards_per_s": round(n / wall_s, 2),
            "p50_s": round(statistics.median(latencies), 3), "p99_s": round(percentile(latencies, 0.99), 3),
            "requests": requests, **extra}


async def batched(url: str, data: list[tuple[str, str]]) -> tuple[dict, list[float]]:
    from genrm_ray.reward_client import RewardClient

    client = RewardClient(url=url, mode="direct", batch_size=64)
    t0 = time.perf_counter()
    batch = await asyncio.wait_for(client.ascore([p for p, _ in data], [r for _, r in data]), MAX_WALL_S)
    wall = time.perf_counter() - t0
    # A sample's latency is its request's; requests run concurrently, so the last one ends at `wall`.
    return summary("batched", len(data), wall, [wall] * len(data), client.attempts), batch.rewards


async def single(name: str, data: list[tuple[str, str]], url: str | None = None, handle=None) -> tuple[dict, list[float]]:
    """Diagnostic ways: one sample per request, every request at once, through RewardClient
    (batch_size=1) over one keep-alive HTTP session (``url``) or the deployment handle (no proxy)."""
    from genrm_ray.reward_client import RewardClient

    client = RewardClient(url=url, handle=handle, mode="direct", batch_size=1)
    t0 = time.perf_counter()
    batch = await asyncio.wait_for(client.ascore([p for p, _ in data], [r for _, r in data]), MAX_WALL_S)
    wall = time.perf_counter() - t0
    # Per-request latencies are not exposed by the client: the batch's wall time stands for p50/p99.
    return summary(name, len(data), wall, [wall] * len(data), client.attempts), batch.rewards


class ScriptedEngine:
    """OpenRLHF's vLLM engine's ``generate``, scripted: the next response queued for the prompt, + EOS, at once."""

    def __init__(self, tokenizer, data: list[tuple[str, str]]):
        self.tokenizer = tokenizer
        self.pending: dict[tuple, list[str]] = {}
        for p, r in data:  # FIFO per prompt: the executes call generate in the order they were started
            self.pending.setdefault(tuple(tokenizer(text=p, add_special_tokens=False)["input_ids"]), []).insert(0, r)

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        text = self.pending[tuple(prompt_token_ids)].pop()
        ids = self.tokenizer(text=text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)])


async def openrlhf(name: str, remote_url: str, data: list[tuple[str, str]], tokenizer) -> tuple[dict, list[float]]:
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_rm_url=remote_url)
    engine = ScriptedEngine(tokenizer, data)
    params = SimpleNamespace(max_tokens=64, logprobs=None)
    latencies: list[float] = []

    async def one(prompt: str) -> float | None:
        t = time.perf_counter()
        out = await executor.execute(prompt, None, params, max_length=4096, hf_tokenizer=tokenizer, llm_engine=engine)
        latencies.append(time.perf_counter() - t)
        reward = out["reward"]  # a tensor from the file, the one-element list /get_reward returns over HTTP
        if reward is None:
            return None
        return float(reward.item() if hasattr(reward, "item") else reward[0] if isinstance(reward, list) else reward)

    t0 = time.perf_counter()
    rewards = await asyncio.wait_for(asyncio.gather(*(one(p) for p, _ in data)), MAX_WALL_S)
    wall = time.perf_counter() - t0
    missing = sum(r is None for r in rewards)
    return summary(name, len(data), wall, latencies, len(data), missing_rewards=missing), rewards


WAYS = ("batched", "single_handle", "single_http", "openrlhf_http", "openrlhf_file", "batched")


async def measure(way: str, data: list[tuple[str, str]], url: str, handle, tokenizer, adapter_file: str) -> tuple[dict, list[float]]:
    if way == "batched":
        return await batched(url, data)
    if way == "single_handle":
        return await single(way, data, handle=handle)
    if way == "single_http":
        return await single(way, data, url=url)
    return await openrlhf(way, url + "/get_reward" if way == "openrlhf_http" else adapter_file, data, tokenizer)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--max-ongoing", type=int, nargs="+", default=[8, 64])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "client_traffic.json"))
    args = p.parse_args()
    if args.prompts * args.group > 1024:
        raise SystemExit(f"--prompts x --group = {args.prompts * args.group} items: keep it at most 1024 (a short benchmark)")

    from ray import serve
    from transformers import AutoTokenizer

    import genrm_ray.integrations.openrlhf as adapter
    from genrm_ray.serving.config import load_serve_config

    os.environ.pop("GENRM_SERVE_TOKEN", None)  # auth off: OpenRLHF's HTTP client sends no token
    start_ray()
    ckpt = checkpoint(args.checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    results, seed = [], 1000
    for max_ongoing in args.max_ongoing:
        cfg = load_serve_config(REPO / "configs" / "serve_test.yaml", [
            f"checkpoint={ckpt}", "deployment.min_replicas=1", "deployment.max_replicas=1",
            f"deployment.max_ongoing_requests={max_ongoing}", "scoring.cache_size=4096"])
        url, handle = deploy(cfg)
        os.environ.update(GENRM_REWARD_URL=url, GENRM_REWARD_MODE="direct")
        asyncio.run(batched(url, items(4, 2, seed=1)))  # warm-up: engine graphs, tokenizer, connections
        rows = []
        # batched first and last: the machine's other load drifts, the pair brackets the other ways.
        for way in WAYS:
            seed += 1  # fresh items: no cache hit of an earlier measurement
            data = items(args.prompts, args.group, seed)
            row, rewards = asyncio.run(measure(way, data, url, handle, tokenizer, adapter.__file__))
            # The same items scored batched (now cache hits) must give the same rewards.
            _, reference = asyncio.run(batched(url, data))
            got = [r for r in rewards if r is not None]
            row["rewards_match_batched"] = len(got) == len(data) and all(abs(a - b) <= 1e-4 for a, b in zip(rewards, reference))
            row["max_ongoing_requests"] = max_ongoing
            rows.append(row)
            print(json.dumps(row), flush=True)
        base = statistics.mean(r["rewards_per_s"] for r in rows if r["way"] == "batched")
        for r in rows:
            r["vs_batched"] = round(r["rewards_per_s"] / base, 3)  # against the mean of the two batched runs
        results += rows
        serve.delete(cfg.http.app_name)
    out = {"checkpoint": "tiny random-init GenRM (benchmarks/serve_common.checkpoint)" if not args.checkpoint else args.checkpoint,
           "mode": "direct", "prompts": args.prompts, "group": args.group, "results": results}
    write_results(args.out, out, "benchmarks/client_traffic.py")
    serve.shutdown()


if __name__ == "__main__":
    main()
