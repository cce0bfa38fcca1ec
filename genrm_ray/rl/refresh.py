"""Verifier refresh during GRPO (train_grpo ``refresh.*``): the policy's own graded rollouts keep the
served verifier current.

A verifier trained once on the SFT policy's samples meets, as RL goes on, responses unlike anything
it was trained on; what the policy finds that the verifier wrongly likes is what reward hacking is.
Every ``refresh.every`` steps:
1. the rollouts since the last refresh on TRAIN problems, graded by the task's grader (the labels a
   policy cannot influence), become D_verify examples: balanced Yes/No, the newest first, as direct
   verdicts or, for a GenRM-CoT, the task's programmatic rationales (``build``);
2. the verifier trainer (actors.verifier_actor.VerifierActor, one DeepSpeed rank) takes
   ``refresh.steps`` optimizer steps on them and publishes the new weights;
3. each served replica (serving ``reload.actor``) loads them in place before its next request.
Only L_verify is trained here (no D_correct term): the refresh adjusts the verdicts, not generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from genrm_ray.data import sft

if TYPE_CHECKING:
    from genrm_ray.rl.grpo import Rollout
    from genrm_ray.tasks import Problem, Task

NAMESPACE = "genrm"  # the Ray namespace of the trainer actor, which the replicas look up by name


def trainer_name(app_name: str) -> str:
    """The trainer actor's name for the reward app ``app_name`` (one trainer per app)."""
    return f"{app_name}-verifier-trainer"


class RefreshBuffer:
    """Graded rollouts since the last refresh."""

    def __init__(self) -> None:
        self.items: list[sft.LabelledSolution] = []

    def add(self, problems: Sequence[Problem], groups: Sequence[Sequence[Rollout]], graded: Sequence[bool]) -> None:
        """One step's rollouts: ``groups[i]`` answers ``problems[i]``; ``graded`` is flat, group after group."""
        flat = [(p, x.text) for p, group in zip(problems, groups) for x in group]
        if len(flat) != len(graded):
            raise ValueError(f"{len(flat)} rollouts but {len(graded)} grades")
        self.items += [sft.LabelledSolution(p, text, bool(ok)) for (p, text), ok in zip(flat, graded) if text.strip()]

    def build(self, task: Task, mode: str, max_examples: int, seed: int = 0) -> tuple[list[sft.SFTRecord], dict[str, Any]]:
        """D_verify examples from the buffer, then empty it: distinct (problem, response) pairs, the
        newest first, balanced Yes/No, at most ``max_examples``. When one class is missing there are no
        examples and the buffer keeps its rollouts for the next refresh."""
        seen: set[tuple[str, str]] = set()
        newest: list[sft.LabelledSolution] = []
        for x in reversed(self.items):
            if (x.problem.id, x.solution) not in seen:
                seen.add((x.problem.id, x.solution))
                newest.append(x)
        right = [x for x in newest if x.correct][: max_examples // 2]
        wrong = [x for x in newest if not x.correct][: max_examples // 2]
        n = min(len(right), len(wrong))
        chosen = right[:n] + wrong[:n]
        if mode == "cot":
            records, _ = sft.build_verify_cot(chosen, task.verification_rationale, balance=True, seed=seed)
        else:
            records = sft.build_verify_direct(chosen, balance=True, seed=seed)
        stats = {"refresh_rollouts": len(self.items), "refresh_distinct": len(newest), "refresh_examples": len(records)}
        if records:
            self.items = []
        return records, stats


__all__ = ["NAMESPACE", "RefreshBuffer", "trainer_name"]
