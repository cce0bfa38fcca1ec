"""Synthetic GenRM-CoT rationales from a teacher model with reference-guided grading.

For tasks without programmatic rationales (GSM8K, problem files), as in the paper:

    (x, y, reference answer) --teacher, `rounds` samples per solution--> rationales ending in a verdict
    keep a rationale only if its verdict matches the true label of y (Task.is_correct) and it does not
    quote the reference (the student never sees it)
    D_cot record: the student prompt verify_cot_prompt(x, y), WITHOUT the reference -> kept rationale

The teacher is any `GenerationBackend` (vLLM or transformers over a local HF dir).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from genrm_ray import prompts
from genrm_ray.data import sft
from genrm_ray.data.sft import LabelledSolution, SFTRecord
from genrm_ray.tasks import Problem, get_task

if TYPE_CHECKING:  # the engines import torch and transformers: seconds before a bad config is rejected
    from genrm_ray.engine import GenerationBackend


@dataclass
class SynthesisConfig:
    task: str = "gsm8k"
    problems_file: str = ""  # JSONL the task's `load` reads; "" = generate `split` (generated tasks only)
    split: str = "train"
    n_problems: int = 100  # generated problems, or the first n of the file (0 = all of the file)
    candidates_per_problem: int = 4  # task.candidate_solutions: the reference and perturbed solutions
    seed: int = 0
    teacher: str = ""  # HF model dir of the teacher
    backend: Literal["vllm", "hf"] = "vllm"
    engine_options: dict[str, Any] = field(default_factory=dict)
    rounds: int = 4  # rationales sampled per solution
    temperature: float = 1.0
    max_tokens: int = 256
    balance: bool = True  # as many Yes as No rationales in the output (after filtering)
    output: str = "runs/synth/verify_cot.jsonl"


def check_config(cfg: SynthesisConfig) -> None:
    """Everything checkable before the teacher loads; errors name the key."""
    from genrm_ray.config import ConfigError
    from genrm_ray.runs import require_hf_model_dir

    if not cfg.teacher:
        raise ConfigError("teacher: not set (an HF model dir)")
    require_hf_model_dir(cfg.teacher, "teacher")
    if cfg.problems_file and not Path(cfg.problems_file).is_file():
        raise ConfigError(f"problems_file: no such file {cfg.problems_file}")
    for key in ("rounds", "max_tokens"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(cfg, key)}")


def load_problems(cfg: SynthesisConfig) -> list[Problem]:
    """The problem file (its first n_problems; 0 = all), or n_problems generated ones of ``split``."""
    task = get_task(cfg.task)
    if cfg.problems_file:
        problems = task.load(cfg.problems_file)
        return problems[: cfg.n_problems] if cfg.n_problems else problems
    return task.generate(cfg.split, cfg.n_problems, seed=cfg.seed)


@dataclass(frozen=True)
class SynthesisStats:
    solutions: int
    offered: int  # rationales sampled (solutions x rounds)
    matched: int  # verdict agrees with the true label and no leak
    rejected_wrong_verdict: int
    rejected_no_verdict: int
    rejected_leak: int  # quoted the reference line the student will not see
    written: int  # records in the output (after balancing)

    @property
    def kept_fraction(self) -> float:
        return self.matched / self.offered if self.offered else 0.0


def cut_after_verdict(text: str) -> str:
    """The rationale up to and including the first verdict (the teacher may run on past it)."""
    head, sep, tail = text.partition(prompts.DIRECT_QUESTION)
    if not sep:
        return text
    for verdict in (prompts.YES, prompts.NO):
        rest = tail[len(verdict):]
        if tail.startswith(verdict) and not rest[:1].isalnum():
            return head + sep + verdict
    return head + sep + tail


def candidates(task_name: str, problems: Sequence[Problem], per_problem: int, seed: int) -> list[LabelledSolution]:
    """Right and wrong solutions for each problem, labelled by the task's grader."""
    task, rng = get_task(task_name), random.Random(seed)
    return [LabelledSolution(p, c.solution, task.is_correct(c.solution, p))
            for p in problems for c in task.candidate_solutions(p, per_problem, rng)]


def synthesize(
    items: Sequence[LabelledSolution],
    teacher: GenerationBackend,
    rounds: int,
    temperature: float = 1.0,
    max_tokens: int = 256,
    seed: int | None = 0,
    balance: bool = True,
) -> tuple[list[SFTRecord], SynthesisStats]:
    """D_cot records from `rounds` teacher rationales per solution, filtered by verdict (see module doc)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    teacher_prompts = [prompts.reference_guided_verify_prompt(x.problem.task, x.problem.question, x.solution,
                                                              x.problem.answer) for x in items]
    outputs = teacher.generate(teacher_prompts, n=rounds, temperature=temperature, max_tokens=max_tokens,
                               stop=[prompts.NEXT_QUESTION], seed=seed)
    offered: list[LabelledSolution] = []
    rationales: list[str] = []
    leaks = 0
    for x, completions in zip(items, outputs):
        for c in completions:
            rationale = cut_after_verdict(c.text)
            if prompts.REFERENCE_ANSWER in rationale:
                leaks += 1
                continue
            offered.append(x)
            rationales.append(rationale)
    # build_verify_cot applies the verdict filter; it asks for one rationale per offered item, in order.
    queue = iter(rationales)
    records, cot = sft.build_verify_cot(offered, lambda _p, _s: next(queue), balance=balance, seed=seed or 0)
    matched = cot.offered - cot.rejected_wrong_verdict - cot.rejected_no_verdict
    stats = SynthesisStats(len(items), len(items) * rounds, matched, cot.rejected_wrong_verdict,
                           cot.rejected_no_verdict, leaks, len(records))
    return records, stats
