"""One GRPO step on Ray, and the run around it: the step's prompts, held-out pass@1, checkpoints and
resume, the summary. jobs/train_grpo.py wires these to the actors of actors/.

A step: G rollouts per prompt from the rollout engine, in chunks, each chunk's reward call in flight
while the next chunk generates -> group-normalized advantages -> old and reference log-probs -> one
optimizer step on every policy rank -> the new weights to the rollout engine (through Ray's object
store, never through the driver).

The actors come in as handles (``GRPOActors``; the Protocols say which methods a step calls), so the
library never imports the actors package. Ray is imported only where a result is awaited: the pure
helpers load, and are tested, without a cluster.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from genrm_ray import prompts
from genrm_ray.responses import BLANK_REWARD, blank_detail, is_blank
from genrm_ray.rl.grpo import Rollout, RolloutBatch, group_advantages, make_rollout_batch
from genrm_ray.stats import auroc

if TYPE_CHECKING:
    from genrm_ray.rl.config import GRPOConfig, RolloutConfig
    from genrm_ray.rl.refresh import RefreshBuffer
    from genrm_ray.tasks import Problem, Task


class RemoteMethod(Protocol):
    """An actor method on a Ray actor handle: ``.remote(...)`` returns an ObjectRef at once."""

    def remote(self, *args: Any, **kwargs: Any) -> Any: ...


class RolloutEngine(Protocol):  # actors.rollout_actor.RolloutActor
    generate: RemoteMethod  # (prompts, n, temperature, max_tokens, seed, stop) -> list[list[Rollout]]
    update_weights: RemoteMethod  # (state dict or its ObjectRef, version)


class RewardScorer(Protocol):  # actors.reward_actor.RewardActor
    score: RemoteMethod  # (prompts, responses, labels) -> RewardBatch


class LogProbModel(Protocol):  # actors.reference_actor.ReferenceActor
    logprobs: RemoteMethod  # (RolloutBatch) -> [B, T] log-probs


class VerifierTrainer(Protocol):  # actors.verifier_actor.VerifierActor
    train: RemoteMethod  # (list[SFTRecord]) -> refresh stats; publishes the next weights version


class Policy(Protocol):  # actors.policy_actor.PolicyGroup: a driver-side object over its rank actors
    def train_step(self, batch: RolloutBatch) -> dict[str, float]: ...
    def state_dict_ref(self) -> Any: ...
    def save_checkpoint(self, directory: str, tag: str) -> None: ...
    def load_checkpoint(self, directory: str, tag: str | None = None) -> None: ...


@dataclass
class GRPOActors:
    rollout: RolloutEngine
    reward: RewardScorer
    policy: Policy
    reference: LogProbModel | None  # None: train.kl_coef = 0, no KL term
    verifier: VerifierTrainer | None = None  # None: refresh.every = 0, the verifier stays as served


@dataclass
class ScoredRollouts:
    groups: list[list[Rollout]]  # G rollouts per problem, in problem order
    rewards: list[float]  # one per rollout, flat: group after group
    details: list[dict]  # per rollout, as the reward source reported it
    rollout_s: float  # time spent generating
    reward_wait_s: float  # time spent waiting for rewards after the last chunk generated


# --- one step --------------------------------------------------------------------------------------

def problems_for_step(problems: Sequence[Problem], seed: int, step: int, n: int) -> list[Problem]:
    """The ``n`` training problems of ``step``: a function of (seed, step) only, so a resumed run sees
    the batches it would have seen."""
    return random.Random(seed * 100_003 + step).sample(list(problems), n)


def rollout_and_score(rollout: RolloutEngine, reward: RewardScorer, problems: Sequence[Problem],
                      cfg: RolloutConfig, seed: int) -> ScoredRollouts:
    """``cfg.group_size`` responses per problem, in ``cfg.chunks`` chunks; each chunk's scoring runs
    while the next chunk generates."""
    import ray

    size = len(problems) // cfg.chunks
    chunks = [list(problems[i:i + size]) for i in range(0, len(problems), size)]
    groups: list[list[Rollout]] = []
    items: list[tuple[str, Problem, Rollout]] = []  # (prompt text, problem, rollout), flat
    pending, t_gen = [], 0.0
    for c, chunk in enumerate(chunks):
        texts = [prompts.solve_prompt(p.task, p.question) for p in chunk]
        t = time.perf_counter()
        out = ray.get(rollout.generate.remote(texts, n=cfg.group_size, temperature=cfg.temperature,
                                              max_tokens=cfg.max_tokens, seed=seed + c, stop=prompts.SOLVE_STOPS))
        t_gen += time.perf_counter() - t
        groups += out
        start = len(items)
        items += [(text, p, x) for text, p, group in zip(texts, chunk, out) for x in group]
        # Blank responses cannot be verified (genrm_ray.responses): BLANK_REWARD and a blank detail,
        # counted in the metrics.
        keep = [i for i in range(start, len(items)) if not is_blank(items[i][2].text)]
        if keep:
            ref = reward.score.remote([items[i][0] for i in keep], [items[i][2].text for i in keep],
                                      [items[i][1].answer for i in keep])
            pending.append((keep, ref))
    t = time.perf_counter()
    rewards, details = [BLANK_REWARD] * len(items), [blank_detail() for _ in items]
    for keep, ref in pending:
        batch = ray.get(ref)
        for i, rw, d in zip(keep, batch.rewards, batch.details):
            rewards[i], details[i] = rw, d
    return ScoredRollouts(groups, rewards, details, t_gen, time.perf_counter() - t)


def grpo_step(actors: GRPOActors, cfg: GRPOConfig, task: Task, problems: Sequence[Problem], step: int,
              pad_id: int, buffer: RefreshBuffer | None = None, run_dir: Path | None = None) -> dict[str, float]:
    """One GRPO update on ``problems``, the engine synced to the new weights (version ``step``); the
    step's metrics (``step_metrics``). ``buffer`` (verifier refresh) gets the step's graded rollouts;
    with ``run_dir``, they are appended to its rollouts.jsonl (``log_rollouts``)."""
    import ray

    scored = rollout_and_score(actors.rollout, actors.reward, problems, cfg.rollout, seed=cfg.train.seed + step)
    t0 = time.perf_counter()
    flat = [x for group in scored.groups for x in group]
    batch = make_rollout_batch([x.prompt_token_ids for x in flat], [x.token_ids for x in flat], pad_id)
    batch.advantages = group_advantages(torch.tensor(scored.rewards, dtype=torch.float32), cfg.rollout.group_size)
    # old_logprobs stay None: train_step makes one optimizer step, so they are its own forward's.
    if actors.reference is not None:
        batch.ref_logprobs = ray.get(actors.reference.logprobs.remote(batch))
    t1 = time.perf_counter()
    stats = actors.policy.train_step(batch)
    t2 = time.perf_counter()
    ray.get(actors.rollout.update_weights.remote(actors.policy.state_dict_ref(), step))
    update_s = time.perf_counter() - t0
    graded = [task.is_correct(x.text, p) for p, group in zip(problems, scored.groups) for x in group]
    if buffer is not None:
        buffer.add(problems, scored.groups, graded)
    if run_dir is not None:
        log_rollouts(run_dir, step, problems, scored, graded)
    # Where the update's time goes: the reference's log-probs, the optimizer step, the weight sync.
    return {**step_metrics(step, scored, graded, stats, update_s),
            "logprobs_s": t1 - t0, "train_s": t2 - t1, "sync_s": update_s - (t2 - t0)}


def refresh_verifier(actors: GRPOActors, cfg: GRPOConfig, task: Task, buffer: RefreshBuffer) -> dict[str, float]:
    """The verifier refresh (genrm_ray.rl.refresh): the buffer's graded rollouts train the verifier,
    whose replicas load the new weights before their next request. Its metrics; ``refresh_skipped`` 1
    when the rollouts held one class only (nothing to balance), and then the buffer keeps filling."""
    import ray

    t = time.perf_counter()
    mode = "cot" if cfg.reward.source == "genrm_cot" else "direct"
    records, stats = buffer.build(task, mode, cfg.refresh.max_examples, seed=cfg.refresh.seed)
    if not records:
        return {"refresh_skipped": 1.0, "refresh_s": time.perf_counter() - t}
    trained = ray.get(actors.verifier.train.remote(records))
    return {**{k: float(v) for k, v in stats.items()}, **trained, "refresh_skipped": 0.0,
            "refresh_s": time.perf_counter() - t}


def step_metrics(step: int, scored: ScoredRollouts, graded: Sequence[bool], stats: dict[str, float],
                 update_s: float) -> dict[str, float]:
    """What a step logs: reward and ground-truth accuracy of its rollouts, the update's stats, timings."""
    flat = [x for group in scored.groups for x in group]
    rewards, details = scored.rewards, scored.details
    return {
        "step": step, "reward_mean": mean_or(rewards), "train_accuracy": mean_or([float(ok) for ok in graded]),
        "kl": stats.get("kl", 0.0), "loss": stats["loss"], "clip_frac": stats.get("clip_frac", 0.0),
        "grad_norm": stats.get("grad_norm", 0.0), "response_tokens": mean_or([len(x.token_ids) for x in flat]),
        "unfinished": mean_or([float(not x.finished) for x in flat]),
        "empty_responses": sum(1 for d in details if d.get("blank")),
        "k_used": mean_or([d.get("k_used", 0) for d in details]),
        # How well the reward tracks the ground truth on this step's rollouts (-1: no such rollout).
        "reward_on_correct": mean_or([rw for rw, ok in zip(rewards, graded) if ok]),
        "reward_on_wrong": mean_or([rw for rw, ok in zip(rewards, graded) if not ok]),
        # AUROC of the reward against correctness: falls toward 0.5 (or below) when the policy has
        # found text that the reward likes and the grader does not (-1: one class only).
        "reward_auroc": auroc(list(rewards), list(graded)) if 0 < sum(graded) < len(graded) else -1.0,
        "rollout_s": scored.rollout_s, "reward_wait_s": scored.reward_wait_s, "update_s": update_s,
    }


ROLLOUTS_FILE = "rollouts.jsonl"  # one line per rollout: what the policy wrote, its reward and its grade


def log_rollouts(run_dir: Path, step: int, problems: Sequence[Problem], scored: ScoredRollouts,
                 graded: Sequence[bool]) -> None:
    """Append a step's rollouts to the run's rollouts.jsonl: the texts a reward was paid for, kept to
    show what a gamed reward paid for (genrm_ray.rl.compare.fooled_rollouts)."""
    flat = [(p, x) for p, group in zip(problems, scored.groups) for x in group]
    with (Path(run_dir) / ROLLOUTS_FILE).open("a") as f:
        for (p, x), reward, ok in zip(flat, scored.rewards, graded):
            f.write(json.dumps({"step": step, "problem_id": p.id, "response": x.text, "reward": round(reward, 4),
                                "correct": bool(ok)}) + "\n")


def trim_rollouts(run_dir: Path, upto_step: int) -> None:
    """Keep rollouts.jsonl's steps up to ``upto_step``: a run resumed from that step's checkpoint logs the
    later steps again (a fresh run, 0, starts the file anew)."""
    path = Path(run_dir) / ROLLOUTS_FILE
    if path.is_file():
        kept = [line for line in path.read_text().splitlines(keepends=True) if json.loads(line)["step"] <= upto_step]
        path.write_text("".join(kept))


def mean_or(values: Sequence[float], default: float = -1.0) -> float:
    """The mean, or ``default`` for no values (a metric with nothing to average)."""
    return sum(values) / len(values) if values else default


def heldout_correct(generate: Callable[..., Sequence[Sequence[Any]]], task: Task, problems: Sequence[Problem],
                    cfg: GRPOConfig) -> list[float]:
    """Per held-out problem, the mean correctness of ``cfg.eval.samples`` responses at
    ``cfg.eval.temperature`` (0: greedy), with the rollouts' token limit. ``generate``: the rollout
    engine's generate (RolloutActor's through Ray, or a VLLMBackend's over an export); each response
    has ``.text``. Their mean is pass@1; kept per problem so that evaluations on the same problems
    compare paired (genrm_ray.rl.compare)."""
    e = cfg.eval
    texts = [prompts.solve_prompt(p.task, p.question) for p in problems]
    out = generate(texts, n=e.samples, temperature=e.temperature, max_tokens=cfg.rollout.max_tokens,
                   seed=cfg.train.seed, stop=prompts.SOLVE_STOPS)
    return [mean_or([float(task.is_correct(x.text, p)) for x in group]) for p, group in zip(problems, out)]


HELDOUT_FILE = "heldout.jsonl"  # one line per held-out evaluation: step, problem ids, per-problem correctness


def log_heldout(run_dir: Path, step: int, problems: Sequence[Problem], correct: Sequence[float],
                source: str = "run") -> float:
    """Append one evaluation's per-problem outcomes to the run's heldout.jsonl (``source``: "run", or
    "export" for genrm_ray.rl.compare's re-evaluation of a finished run); pass@1 (their mean)."""
    row = {"step": step, "source": source, "problem_ids": [p.id for p in problems], "correct": list(correct)}
    with open(Path(run_dir) / HELDOUT_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")
    return mean_or(correct)


# --- checkpoints and resume ------------------------------------------------------------------------
# <run_dir>/checkpoints/step_<n>/: the policy's DeepSpeed checkpoint (tag step_<n>) and state.json,
# written last, which marks the checkpoint complete.

def latest_checkpoint(run_dir: Path) -> tuple[int, Path | None]:
    """(step, folder) of the last complete checkpoint in ``run_dir``; (0, None) if there is none."""
    done = sorted((int(p.parent.name.split("_")[1]), p.parent) for p in Path(run_dir).glob("checkpoints/step_*/state.json"))
    return done[-1] if done else (0, None)


VERIFIER_EXPORT = "verifier_hf"  # the refreshed verifier's HF export, in a checkpoint and in the run dir


def save_checkpoint(policy: Policy, run_dir: Path, step: int, elapsed_s: float, verifier: Any = None) -> Path:
    """The policy's optimizer and weights after ``step``, the refreshed verifier's export (``verifier``:
    its trainer, with refresh on), and the run's elapsed time (the time budget carries over a resume)."""
    folder = Path(run_dir) / "checkpoints" / f"step_{step}"
    policy.save_checkpoint(str(folder), tag=f"step_{step}")
    if verifier is not None:
        import ray  # only with a verifier actor: the rest needs no Ray

        ray.get(verifier.save_hf.remote(str(folder / VERIFIER_EXPORT)))
    (folder / "state.json").write_text(json.dumps({"step": step, "elapsed_s": elapsed_s}) + "\n")
    return folder


def restore_checkpoint(actors: GRPOActors, folder: Path, step: int) -> float:
    """Load ``folder`` into the policy, sync the engine to it (version ``step``); the elapsed seconds
    the run had when it saved."""
    import ray

    actors.policy.load_checkpoint(str(folder))
    ray.get(actors.rollout.update_weights.remote(actors.policy.state_dict_ref(), step))
    return json.loads((Path(folder) / "state.json").read_text())["elapsed_s"]


# --- summary ---------------------------------------------------------------------------------------

def run_summary(rows: Sequence[dict[str, Any]], reward_source: str, hf_model: Path) -> dict[str, Any]:
    """summary.json of a run from its metrics rows (genrm_ray.rl.plots.read_metrics): held-out pass@1
    at the first and last evaluation, steps, wall time, the exported policy."""
    evals = [(x["step"], x["pass_at_1"]) for x in rows if "pass_at_1" in x]
    if not evals:
        raise ValueError("no held-out pass@1 in the metrics: the run logged no evaluation")
    return {"reward_source": reward_source, "pass_at_1_start": evals[0][1], "pass_at_1_end": evals[-1][1],
            "gain": evals[-1][1] - evals[0][1], "steps": rows[-1]["step"], "elapsed_s": rows[-1].get("elapsed_s"),
            "hf_model": str(hf_model)}


__all__ = ["HELDOUT_FILE", "GRPOActors", "LogProbModel", "Policy", "RemoteMethod", "RewardScorer", "RolloutEngine",
           "ScoredRollouts", "VERIFIER_EXPORT", "VerifierTrainer", "grpo_step", "heldout_correct", "latest_checkpoint",
           "log_heldout", "mean_or", "problems_for_step", "refresh_verifier", "restore_checkpoint", "rollout_and_score",
           "run_summary", "save_checkpoint", "step_metrics", "ROLLOUTS_FILE", "log_rollouts", "trim_rollouts"]
