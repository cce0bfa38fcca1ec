#!/usr/bin/env python
"""GRPO on Ray with GenRM rewards: a policy improves on the task, rewarded by the served verifier.

    python jobs/train_grpo.py                                          # embedded default (after `make demo`)
    python jobs/train_grpo.py reward.source=oracle run_dir=runs/grpo-oracle
    python jobs/train_grpo.py --config configs/grpo_test.yaml
    ray job submit --working-dir . -- python jobs/train_grpo.py --config configs/<config>.yaml

One actor per role (actors/): RolloutActor (vLLM, samples G responses per prompt), PolicyWorker x N
(DeepSpeed ZeRO, the trained policy), ReferenceActor (frozen SFT policy for the KL term), RewardActor
(the served GenRM-CoT / GenRM direct through a Serve handle or HTTP, the discriminative RM, or the
ground-truth grader). Each step: rollout in chunks (scoring of one chunk overlaps generation of the
next) -> group-normalized advantages -> old / reference log-probs -> one clipped policy-gradient
update -> weights to the rollout engine. Rerunning in the same run_dir resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import genrm_ray.env  # noqa: E402

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load
from genrm_ray.config import ConfigError, to_dict  # noqa: E402
from genrm_ray.rl.config import GRPOConfig, load_grpo_config  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "grpo_last_letter_cpu.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG.relative_to(REPO)})")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. reward.source=oracle train.steps=20")
    return p.parse_args(argv)


def reward_source(cfg: GRPOConfig) -> dict:
    """The RewardActor's source; for genrm_* without an endpoint, deploy the Serve app in this cluster."""
    r = cfg.reward
    if r.source == "oracle":
        return {"kind": "oracle", "task": cfg.task.name}
    if r.source == "discriminative":
        return {"kind": "discriminative", "model_dir": cfg.models.verifier, "task": cfg.task.name}
    served = {"kind": "serve", "mode": "cot" if r.source == "genrm_cot" else "direct", "k": r.k, "adaptive": r.adaptive,
              "task": cfg.task.name, "batch_size": r.batch_size, "retries": r.retries}
    if r.url:  # the token is read here, in the driver: Ray workers do not inherit the driver's environment
        return served | {"url": r.url, "token": os.environ.get("GENRM_REWARD_TOKEN")}
    if r.app_name:
        return served | {"app_name": r.app_name}
    from genrm_ray.serving.app import deploy
    from genrm_ray.serving.config import load_serve_config

    serve_cfg = load_serve_config(r.serve_config, [f"checkpoint={cfg.models.verifier}", *r.serve_overrides])
    deploy(serve_cfg)
    print(f"[grpo] serving {cfg.models.verifier} as Serve app {serve_cfg.http.app_name!r}")
    return served | {"app_name": serve_cfg.http.app_name}


def rollout_and_score(rollout, reward, problems, cfg: GRPOConfig, seed: int):
    """G responses per problem, in chunks; each chunk's scoring runs while the next chunk generates."""
    import ray

    from genrm_ray import prompts
    from genrm_ray.integrations.common import blank_detail
    from genrm_ray.sampling import STOP

    r = cfg.rollout
    size = len(problems) // r.chunks
    chunks = [problems[i:i + size] for i in range(0, len(problems), size)]
    groups, items, pending, t_gen = [], [], [], 0.0  # items: (prompt text, problem, rollout), flat
    for c, chunk in enumerate(chunks):
        texts = [prompts.solve_prompt(p.task, p.question) for p in chunk]
        t = time.perf_counter()
        out = ray.get(rollout.generate.remote(texts, n=r.group_size, temperature=r.temperature,
                                              max_tokens=r.max_tokens, seed=seed + c, stop=STOP))
        t_gen += time.perf_counter() - t
        groups += out
        start = len(items)
        items += [(text, p, x) for text, p, group in zip(texts, chunk, out) for x in group]
        # Blank responses cannot be verified (the endpoint rejects them): reward 0 and a blank detail,
        # as the framework adapters do (integrations.common.ascore_nonblank), counted in the metrics.
        keep = [i for i in range(start, len(items)) if items[i][2].text.strip()]
        if keep:
            ref = reward.score.remote([items[i][0] for i in keep], [items[i][2].text for i in keep],
                                      [items[i][1].answer for i in keep])
            pending.append((keep, ref))
    t = time.perf_counter()
    rewards, details = [0.0] * len(items), [blank_detail() for _ in items]
    for keep, ref in pending:
        batch = ray.get(ref)
        for i, rw, d in zip(keep, batch.rewards, batch.details):
            rewards[i], details[i] = rw, d
    return groups, rewards, details, t_gen, time.perf_counter() - t


def pass_at_1(rollout, task, problems, cfg: GRPOConfig) -> float:
    import ray

    from genrm_ray import prompts
    from genrm_ray.sampling import STOP

    e = cfg.eval
    texts = [prompts.solve_prompt(p.task, p.question) for p in problems]
    out = ray.get(rollout.generate.remote(texts, n=e.samples, temperature=e.temperature,
                                          max_tokens=cfg.rollout.max_tokens, seed=cfg.train.seed, stop=STOP))
    correct = [task.is_correct(x.text, p) for p, group in zip(problems, out) for x in group]
    return sum(correct) / len(correct)


def mean_or(values: list[float], default: float = -1.0) -> float:
    return sum(values) / len(values) if values else default


def latest_checkpoint(run_dir: Path) -> tuple[int, Path | None]:
    done = sorted((int(p.parent.name.split("_")[1]), p.parent) for p in run_dir.glob("checkpoints/step_*/state.json"))
    return done[-1] if done else (0, None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.config.is_file():
            raise ConfigError(f"--config: no such file {args.config}")
        cfg = load_grpo_config(args.config, args.overrides)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import ray
    import torch
    from transformers import AutoTokenizer

    from actors.policy_actor import PolicyGroup
    from actors.reference_actor import ReferenceActor
    from actors.reward_actor import RewardActor
    from actors.rollout_actor import RolloutActor
    from genrm_ray.rl.grpo import group_advantages, make_rollout_batch
    from genrm_ray.rl.plots import plot_grpo_runs, read_metrics
    from genrm_ray.run_logger import RunLogger
    from genrm_ray.tasks import get_task

    run_dir = Path(cfg.run_dir or f"runs/grpo-{cfg.reward.source}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "grpo_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    print(f"[grpo] config {args.config} -> {run_dir}; reward {cfg.reward.source}; policy {cfg.models.policy}")
    genrm_ray.env.connect_ray(cfg.ray_address)

    task = get_task(cfg.task.name)
    train_problems = task.generate("train", cfg.task.n_train, seed=cfg.task.seed)
    eval_problems = task.generate(cfg.task.eval_split, cfg.task.n_eval, seed=cfg.task.seed)
    t, r = cfg.train, cfg.rollout
    pad_id = AutoTokenizer.from_pretrained(cfg.models.policy).pad_token_id

    source = reward_source(cfg)
    reward = RewardActor.options(num_cpus=cfg.reward.num_cpus).remote(source)
    rollout = RolloutActor.options(num_cpus=r.num_cpus).remote(cfg.models.policy, r.engine)
    policy = PolicyGroup(cfg.models.policy, t.num_workers, {
        "zero_stage": t.zero_stage, "bf16": t.bf16, "lr": t.lr, "weight_decay": t.weight_decay, "grad_clip": t.grad_clip,
        "micro_batch_size": t.micro_batch_size, "clip_eps": t.clip_eps, "kl_coef": t.kl_coef, "seed": t.seed,
        "warmup_steps": t.warmup_steps}, t.resources_per_worker)
    reference = ReferenceActor.options(num_cpus=0.25).remote(cfg.models.policy) if t.kl_coef > 0 else None
    try:
        start, ckpt = latest_checkpoint(run_dir)
        elapsed_before = 0.0
        if ckpt is not None:  # resume: optimizer and weights from the checkpoint, then the engine follows
            elapsed_before = json.loads((ckpt / "state.json").read_text())["elapsed_s"]
            policy.load_checkpoint(str(ckpt))
            ray.get(rollout.update_weights.remote(policy.state_dict_ref(), start))
            print(f"[grpo] resumed from {ckpt} (step {start})")
        logger = RunLogger(run_dir, to_dict(cfg), t.steps, start, desc="grpo", postfix=("reward_mean", "pass_at_1"),
                           wandb_project=cfg.logging.wandb_project, wandb_mode=cfg.logging.wandb_mode)
        if start == 0:
            logger.log({"step": 0, "pass_at_1": pass_at_1(rollout, task, eval_problems, cfg), "elapsed_s": 0.0})

        t_run = time.perf_counter() - elapsed_before
        for step in range(start + 1, t.steps + 1):
            # The prompts of a step depend only on (seed, step), so a resumed run sees the same batches.
            problems = random.Random(t.seed * 100_003 + step).sample(train_problems, r.prompts_per_step)
            groups, rewards, details, t_rollout, t_wait = rollout_and_score(rollout, reward, problems, cfg, seed=t.seed + step)

            t0 = time.perf_counter()
            flat = [x for group in groups for x in group]
            batch = make_rollout_batch([x.prompt_token_ids for x in flat], [x.token_ids for x in flat], pad_id)
            batch.advantages = group_advantages(torch.tensor(rewards, dtype=torch.float32), r.group_size)
            batch.old_logprobs = policy.logprobs(batch)
            batch.ref_logprobs = ray.get(reference.logprobs.remote(batch)) if reference is not None else None
            stats = policy.train_step(batch)
            ray.get(rollout.update_weights.remote(policy.state_dict_ref(), step))
            t_update = time.perf_counter() - t0

            graded = [task.is_correct(x.text, p) for p, group in zip(problems, groups) for x in group]
            metrics = {
                "step": step, "reward_mean": sum(rewards) / len(rewards), "train_accuracy": sum(graded) / len(graded),
                "kl": stats.get("kl", 0.0), "loss": stats["loss"], "clip_frac": stats.get("clip_frac", 0.0),
                "grad_norm": stats.get("grad_norm", 0.0), "response_tokens": sum(len(x.token_ids) for x in flat) / len(flat),
                "unfinished": sum(not x.finished for x in flat) / len(flat),
                "empty_responses": sum(1 for d in details if d.get("blank")),
                "k_used": sum(d.get("k_used", 0) for d in details) / len(details),
                # How well the reward tracks the ground truth on this step's rollouts (-1: no such rollout).
                "reward_on_correct": mean_or([rw for rw, ok in zip(rewards, graded) if ok]),
                "reward_on_wrong": mean_or([rw for rw, ok in zip(rewards, graded) if not ok]),
                "rollout_s": t_rollout, "reward_wait_s": t_wait, "update_s": t_update,
                "elapsed_s": time.perf_counter() - t_run,
            }
            out_of_time = t.budget_minutes > 0 and metrics["elapsed_s"] > 60 * t.budget_minutes
            last = step == t.steps or out_of_time
            if step % cfg.eval.every == 0 or last:
                metrics["pass_at_1"] = pass_at_1(rollout, task, eval_problems, cfg)
                logger.note(f"[grpo] step {step}: held-out pass@1 {metrics['pass_at_1']:.3f}, reward {metrics['reward_mean']:.3f}, "
                            f"train acc {metrics['train_accuracy']:.3f}, KL {metrics['kl']:.4f}, "
                            f"{metrics['response_tokens']:.0f} response tokens, rollout {t_rollout:.1f} s / reward wait "
                            f"{t_wait:.1f} s / update {t_update:.1f} s, {metrics['elapsed_s'] / 60:.1f} min")
            logger.log(metrics)
            if step % cfg.checkpoint_every == 0 or last:
                ckpt = run_dir / "checkpoints" / f"step_{step}"
                policy.save_checkpoint(str(ckpt), tag=f"step_{step}")
                # state.json is written last: it marks the checkpoint complete
                (ckpt / "state.json").write_text(json.dumps({"step": step, "elapsed_s": metrics["elapsed_s"]}) + "\n")
            if out_of_time:
                print(f"[grpo] time budget of {t.budget_minutes} min reached after step {step}")
                break
        logger.close()

        policy.save_hf(str(run_dir / "hf_model"))
    finally:  # actors, their placement group and a Serve app this job started must not outlive it
        policy.shutdown()
        for actor in (rollout, reward, reference):
            if actor is not None:
                ray.kill(actor)
        if "app_name" in source and not cfg.reward.app_name:
            from ray import serve

            serve.delete(source["app_name"])

    rows = read_metrics(run_dir)
    evals = [(x["step"], x["pass_at_1"]) for x in rows if "pass_at_1" in x]
    summary = {"reward_source": cfg.reward.source, "pass_at_1_start": evals[0][1], "pass_at_1_end": evals[-1][1],
               "gain": evals[-1][1] - evals[0][1], "steps": rows[-1]["step"], "elapsed_s": rows[-1].get("elapsed_s"),
               "hf_model": str(run_dir / "hf_model")}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_grpo_runs({cfg.reward.source: rows}, run_dir / "grpo_curves.png")
    print(f"\n=== GRPO ({cfg.reward.source}) ===\nheld-out pass@1 {summary['pass_at_1_start']:.3f} -> "
          f"{summary['pass_at_1_end']:.3f} in {summary['steps']} steps ({summary['elapsed_s']:.0f} s)\n"
          f"summary: {run_dir / 'summary.json'}  curves: {run_dir / 'grpo_curves.png'}  policy: {summary['hf_model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
