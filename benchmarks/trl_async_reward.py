#!/usr/bin/env python
"""What the async TRL reward function buys a GRPOTrainer step, against the sync one, in one paired run.

    python benchmarks/trl_async_reward.py [--steps 3] [--rounds 2] [--out benchmarks/results/trl_async_reward.json]

TRL 1.16's ``GRPOTrainer._calculate_rewards`` runs the sync reward functions one after another and
awaits the async ones together (``asyncio.gather`` on its own event loop). So the async form can
only save time when a trainer has several async reward functions: each ``setup`` below trains the
tiny policy (CPU, transformers generation) for ``--steps`` steps against one local reward app
(tests/configs/serve_test.yaml, the tiny random-init GenRM, 1 replica, auth off, 127.0.0.1, the score
cache off so every setup does the same scoring work):

- ``two_sync`` / ``two_async``: two GenRM rewards (direct, and CoT with K=4) as ``GenRMReward`` /
  ``AsyncGenRMReward``;
- ``one_sync`` / ``one_async``: the CoT reward alone.

Setups alternate within each round (the machine's other load drifts). Per setup: the time TRL spends
in ``_calculate_rewards`` per step and the whole step's time (median over rounds x steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from serve_common import REPO, checkpoint, deploy, start_ray, write_results

SETUPS = ("two_sync", "two_async", "one_sync", "one_async")


def reward_funcs(setup: str, url: str) -> list:
    from genrm_ray.integrations.trl import AsyncGenRMReward, GenRMReward

    cls = AsyncGenRMReward if setup.endswith("async") else GenRMReward
    cot = cls(name="genrm_cot", url=url, mode="cot", k=4)
    return [cls(name="genrm_direct", url=url, mode="direct"), cot] if setup.startswith("two") else [cot]


def train(setup: str, url: str, policy: str, dataset, steps: int, out_dir: str) -> dict:
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=out_dir, use_cpu=True, max_steps=steps, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=24, temperature=1.0, beta=0.0, learning_rate=1e-4, logging_steps=1,
                      report_to="none", save_strategy="no", seed=0, bf16=False, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=policy, reward_funcs=reward_funcs(setup, url), args=args, train_dataset=dataset)
    reward_s: list[float] = []
    calculate = trainer._calculate_rewards

    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return calculate(*a, **kw)
        finally:
            reward_s.append(time.perf_counter() - t)

    trainer._calculate_rewards = timed  # TRL calls it as self._calculate_rewards once per generation batch
    t0 = time.perf_counter()
    trainer.train()
    step_s = (time.perf_counter() - t0) / steps
    return {"reward_s": reward_s, "step_s": step_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "trl_async_reward.json"))
    args = p.parse_args()
    if args.steps * args.rounds > 20:
        raise SystemExit("--steps x --rounds: keep it at most 20 (a short benchmark)")

    from datasets import Dataset
    from ray import serve

    from genrm_ray import prompts
    from genrm_ray.serving.config import load_serve_config
    from genrm_ray.tasks import get_task

    os.environ.pop("GENRM_SERVE_TOKEN", None)
    start_ray()
    ckpt = checkpoint(None)  # the tiny model is both the policy and the GenRM: the rewards' timing is what counts
    cfg = load_serve_config(REPO / "configs" / "serve_test.yaml", [
        f"checkpoint={ckpt}", "deployment.min_replicas=1", "deployment.max_replicas=1", "scoring.cache_size=0"])
    url, _ = deploy(cfg)
    problems = get_task("last_letter").generate("train", 64, seed=0)
    dataset = Dataset.from_list([{"prompt": prompts.solve_prompt("last_letter", q.question), "answer": q.answer} for q in problems])
    runs: dict[str, list[dict]] = {s: [] for s in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        train("one_sync", url, ckpt, dataset, 1, tmp)  # warm-up: model load paths, engine, connections
        for r in range(args.rounds):
            for setup in SETUPS:
                run = train(setup, url, ckpt, dataset, args.steps, tmp)
                runs[setup].append(run)
                print(json.dumps({"round": r, "setup": setup, **run}), flush=True)
    serve.shutdown()

    summary = {}
    for setup, rs in runs.items():
        rewards = [x for run in rs for x in run["reward_s"]]
        summary[setup] = {"reward_s_median": round(statistics.median(rewards), 3),
                          "step_s_median": round(statistics.median(run["step_s"] for run in rs), 3)}
    for n in ("two", "one"):
        sync, asyn = summary[f"{n}_sync"], summary[f"{n}_async"]
        summary[f"{n}_async_vs_sync"] = {"reward_time": round(asyn["reward_s_median"] / sync["reward_s_median"], 3),
                                         "step_time": round(asyn["step_s_median"] / sync["step_s_median"], 3)}
    out = {"policy_and_genrm": "tiny random-init model (benchmarks/serve_common.checkpoint)",
           "grpo": {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 24, "steps": args.steps,
                    "rounds": args.rounds},
           "summary": summary, "runs": runs}
    print(json.dumps(summary, indent=2))
    write_results(args.out, out, "benchmarks/trl_async_reward.py")


if __name__ == "__main__":
    main()
