#!/usr/bin/env python
"""GRPO on Ray with GenRM rewards: a policy improves on the task, rewarded by the served verifier.

    python jobs/train_grpo.py                 # embedded default: needs runs/ll-cot (the command heads its config)
    python jobs/train_grpo.py reward.source=oracle run_dir=runs/grpo-oracle
    python jobs/train_grpo.py --config tests/configs/grpo_test.yaml
    ray job submit --working-dir . -- python jobs/train_grpo.py --config configs/<config>.yaml

Recipe: (1) the config (genrm_ray.rl.config; bad input stops the job here, exit code 2); (2) start, in
one ExitStack so that whatever was started is released however the job ends: the GenRM Serve app
(genrm_* sources naming neither reward.url nor reward.app_name), the VerifierActor (refresh.every > 0),
the RewardActor (its source by name from genrm_ray.rl.rewards), the vLLM RolloutActor, the
ReferenceActor (frozen SFT policy for the KL term) and the PolicyGroup (DeepSpeed ZeRO ranks);
(3) resume from the run dir's last checkpoint, if any (a refreshed verifier from it too); (4) GRPO
steps (genrm_ray.rl.step.grpo_step), the verifier refresh every refresh.every steps
(genrm_ray.rl.refresh), held-out pass@1 every eval.every steps, a checkpoint every checkpoint_every,
until train.steps or train.budget_minutes; (5) the policy's HF export (and the refreshed verifier's),
summary.json and grpo_curves.png in the run dir (checkpoints, export and summary.json in
<storage>/<run dir name> when `storage` names a shared path).

Run it from the repository root (or `ray job submit --working-dir .`): config paths are relative to
it, and Ray workers import actors/ from the driver's working directory.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The submitted working dir (or this checkout) must win over an installed copy of the package.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REFERENCE_CPUS = 0.25  # the frozen reference's actor: one forward pass per step

from genrm_ray import launch  # noqa: E402  (first: project caches + offline settings)
from genrm_ray.config import to_dict  # noqa: E402
from genrm_ray.rl.config import GRPOConfig, check_grpo_config  # noqa: E402

if TYPE_CHECKING:
    from genrm_ray.rl.step import GRPOActors
    from genrm_ray.tasks import Problem

DEFAULT_CONFIG = REPO / "configs" / "grpo" / "demo.yaml"


def main(argv: list[str] | None = None) -> int:
    args = launch.parse_args(__doc__, DEFAULT_CONFIG, argv)
    cfg = launch.load(GRPOConfig, args, check=check_grpo_config)
    run_dir = launch.run_dir(cfg.run_dir or f"runs/grpo-{cfg.reward.source}", "grpo", cfg, "grpo_config.json")
    # Checkpoints, the policy's export and summary.json: in the run dir, or <storage>/<run name>.
    stored = Path(cfg.storage).resolve() / run_dir.name if cfg.storage else run_dir
    print(f"[grpo] config {args.config} -> {run_dir}; reward {cfg.reward.source}; policy {cfg.models.policy}")

    import ray
    from transformers import AutoTokenizer

    from genrm_ray.env import node_memory_used_gib
    from genrm_ray.rl import step as grpo
    from genrm_ray.rl.plots import plot_grpo_runs, read_metrics
    from genrm_ray.rl.refresh import RefreshBuffer
    from genrm_ray.run_logger import RunLogger
    from genrm_ray.tasks import get_task
    from genrm_ray.tasks.config import load_problems

    launch.connect_ray(cfg.ray_address, log_dir=run_dir)
    task = get_task(cfg.task.name, cfg.task.options)
    train_problems, eval_problems = load_problems(cfg.task)
    pad_id = AutoTokenizer.from_pretrained(cfg.models.policy).pad_token_id
    t = cfg.train

    # `ray job stop` sends SIGTERM: leave through the ExitStack, so the Serve app goes too (Serve
    # apps outlive their driver; actors and placement groups die with it).
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    start, ckpt = grpo.latest_checkpoint(stored)
    if ckpt is not None and (ckpt / grpo.VERIFIER_EXPORT).is_dir():  # serve and refresh the refreshed verifier
        cfg.models.verifier = str((ckpt / grpo.VERIFIER_EXPORT).resolve())
    buffer = RefreshBuffer() if cfg.refresh.every > 0 else None
    with contextlib.ExitStack() as started:
        actors = start_actors(cfg, started, train_problems)
        elapsed_before = 0.0
        if ckpt is not None:  # optimizer and weights from the checkpoint, then the engine follows
            elapsed_before = grpo.restore_checkpoint(actors, ckpt, start)
            print(f"[grpo] resumed from {ckpt} (step {start})")
        logger = RunLogger(run_dir, to_dict(cfg), t.steps, start, desc="grpo", postfix=("reward_mean", "pass_at_1"),
                           wandb_project=cfg.logging.wandb_project, wandb_mode=cfg.logging.wandb_mode)
        started.callback(logger.close)

        def heldout(step: int) -> float:  # pass@1, with its per-problem outcomes kept for paired comparisons
            generate = actors.rollout.generate.remote
            correct = grpo.heldout_correct(lambda *a, **kw: ray.get(generate(*a, **kw)), task, eval_problems, cfg)
            return grpo.log_heldout(run_dir, step, eval_problems, correct)

        grpo.trim_rollouts(run_dir, start)  # a resumed run logs the steps after its checkpoint again
        if start == 0:
            logger.log({"step": 0, "pass_at_1": heldout(0), "elapsed_s": 0.0})

        t_run = time.perf_counter() - elapsed_before
        for step in range(start + 1, t.steps + 1):
            problems = grpo.problems_for_step(train_problems, t.seed, step, cfg.rollout.prompts_per_step)
            metrics = grpo.grpo_step(actors, cfg, task, problems, step, pad_id, buffer, run_dir)
            if buffer is not None and step % cfg.refresh.every == 0:
                metrics.update(grpo.refresh_verifier(actors, cfg, task, buffer))
            metrics["elapsed_s"] = time.perf_counter() - t_run
            metrics["node_memory_gib"] = node_memory_used_gib()  # at the step's end
            out_of_time = t.budget_minutes > 0 and metrics["elapsed_s"] > 60 * t.budget_minutes
            last = step == t.steps or out_of_time
            if step % cfg.eval.every == 0 or last:
                metrics["pass_at_1"] = heldout(step)
                logger.note(progress_line(metrics))
            logger.log(metrics)
            if step % cfg.checkpoint_every == 0 or last:
                grpo.save_checkpoint(actors.policy, stored, step, metrics["elapsed_s"], actors.verifier)
            if out_of_time:
                print(f"[grpo] time budget of {t.budget_minutes} min reached after step {step}")
                break
        actors.policy.save_hf(str(stored / "hf_model"))
        if actors.verifier is not None:
            ray.get(actors.verifier.save_hf.remote(str(stored / grpo.VERIFIER_EXPORT)))

    rows = read_metrics(run_dir)
    summary = grpo.run_summary(rows, cfg.reward.source, stored / "hf_model")
    for folder in {run_dir, stored}:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_grpo_runs({cfg.reward.source: rows}, run_dir / "grpo_curves.png")
    print(f"\n=== GRPO ({cfg.reward.source}) ===\nheld-out pass@1 {summary['pass_at_1_start']:.3f} -> "
          f"{summary['pass_at_1_end']:.3f} in {summary['steps']} steps ({summary['elapsed_s']:.0f} s)\n"
          f"summary: {run_dir / 'summary.json'}  curves: {run_dir / 'grpo_curves.png'}  policy: {summary['hf_model']}")
    return 0


def start_actors(cfg: GRPOConfig, started: contextlib.ExitStack, train_problems: list[Problem]) -> GRPOActors:
    """The reward app (if this job serves the GenRM itself) and one actor per role, each registered in
    ``started`` as soon as it exists: whatever fails next, what was started is released."""
    import ray

    from actors.policy_actor import PolicyGroup
    from actors.reference_actor import ReferenceActor
    from actors.reward_actor import RewardActor
    from actors.rollout_actor import RolloutActor
    from genrm_ray.rl.rewards import needs_reward_app, source_options
    from genrm_ray.rl.step import GRPOActors

    verifier = None
    if cfg.refresh.every > 0:  # before the app: its replicas follow this actor's weights (serving reload.actor)
        from actors.verifier_actor import VerifierActor
        from genrm_ray.rl.config import serve_config
        from genrm_ray.rl.refresh import NAMESPACE, trainer_name

        name = trainer_name(serve_config(cfg).http.app_name)
        verifier = VerifierActor.options(name=name, namespace=NAMESPACE, num_cpus=cfg.refresh.num_cpus,
                                           max_concurrency=4).remote(cfg.models.verifier, cfg.refresh)
        started.callback(ray.kill, verifier)
    app_name = deploy_reward_app(cfg, started) if needs_reward_app(cfg) else ""
    reward = RewardActor.options(num_cpus=cfg.reward.num_cpus).remote(cfg.reward.source, source_options(cfg, app_name, train_problems))
    started.callback(ray.kill, reward)
    rollout = RolloutActor.options(num_cpus=cfg.rollout.num_cpus).remote(cfg.models.policy, cfg.rollout.engine)
    started.callback(ray.kill, rollout)
    reference = None
    if cfg.train.kl_coef > 0:
        from genrm_ray.train.config import resolve_bf16

        bf16 = resolve_bf16(cfg.train.deepspeed, on_gpu=cfg.train.resources_per_worker.get("GPU", 0) > 0, key="train.deepspeed")
        reference = ReferenceActor.options(num_cpus=REFERENCE_CPUS).remote(cfg.models.policy, cfg.train.micro_batch_size,
                                                                 cfg.train.torch_threads, bf16)
        started.callback(ray.kill, reference)
    # Last: the actors above load their models while the ranks' placement group waits for room.
    policy = PolicyGroup(cfg.models.policy, cfg.train, timeout_s=cfg.train.placement_timeout_s)
    started.callback(policy.shutdown)
    asked = {f"RewardActor (reward.num_cpus={cfg.reward.num_cpus:g})": reward,
             f"RolloutActor (rollout.num_cpus={cfg.rollout.num_cpus:g})": rollout}
    if reference is not None:
        asked[f"ReferenceActor ({REFERENCE_CPUS:g} CPU, with train.kl_coef > 0)"] = reference
    if verifier is not None:
        asked[f"VerifierActor (refresh.num_cpus={cfg.refresh.num_cpus:g})"] = verifier
    wait_started(asked, cfg.train.placement_timeout_s)
    return GRPOActors(rollout, reward, policy, reference, verifier)


def wait_started(actors: dict[str, Any], timeout_s: float) -> None:
    """Every actor placed and its __init__ done within ``timeout_s``, else RuntimeError naming those that
    are not. Ray keeps an actor it cannot place pending without an error, and the first call on it
    waits forever: a run whose actors ask for more CPUs than the cluster has would hang at step 1."""
    import ray

    names = {actor.__ray_ready__.remote(): name for name, actor in actors.items()}
    ready, pending = ray.wait(list(names), num_returns=len(names), timeout=timeout_s)
    ray.get(ready)  # an __init__ that raised raises here
    if pending:
        free, total = ray.available_resources().get("CPU", 0.0), ray.cluster_resources().get("CPU", 0.0)
        raise RuntimeError(f"{', '.join(names[r] for r in pending)} not started within {timeout_s:g} s "
                           f"(train.placement_timeout_s). {free:g} of the cluster's {total:g} CPUs are free: the job's "
                           "actors, its policy ranks (train.resources_per_worker) and the reward app's replicas "
                           "(deployment.num_cpus) ask for more than the cluster has; lower a num_cpus above")


def deploy_reward_app(cfg: GRPOConfig, started: contextlib.ExitStack) -> str:
    """Serve models.verifier as the app of reward.serve_config; it is deleted when ``started`` closes
    (registered before the deploy, so a half-deployed app goes too). Returns the app's name."""
    from ray import serve

    from genrm_ray.rl.config import serve_config
    from genrm_ray.serving.app import deploy

    serve_cfg = serve_config(cfg)
    name = serve_cfg.http.app_name
    if name in serve.status().applications:  # someone else's: this job would replace it, then delete it
        launch.fail(f"reward.serve_overrides: a Serve app {name!r} already runs in this cluster; use it with "
                    f"reward.app_name={name}, or give this job's app another http.app_name")
    started.callback(serve.delete, name)
    deploy(serve_cfg)
    print(f"[grpo] serving {cfg.models.verifier} as Serve app {name!r}")
    return name


def progress_line(m: dict) -> str:
    return (f"[grpo] step {m['step']}: held-out pass@1 {m['pass_at_1']:.3f}, reward {m['reward_mean']:.3f}, "
            f"train acc {m['train_accuracy']:.3f}, KL {m['kl']:.4f}, {m['response_tokens']:.0f} response tokens, "
            f"rollout {m['rollout_s']:.1f} s / reward wait {m['reward_wait_s']:.1f} s / update {m['update_s']:.1f} s, "
            f"{m['elapsed_s'] / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
