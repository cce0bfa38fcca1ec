"""The pools Best-of-N ranks (Ray): the policy's solutions per problem, and one Ray Data scoring pass
per verifier over them.

    problems --build_pools (Ray Data + vLLM)--> PoolProblem: M solutions per problem, graded by the task
             --score_pools (one engine actor pool per verifier)--> PoolProblem.scores[verifier]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrm_ray.evaluation.config import EvalConfig, EvalInputError, reused_scores_file
from genrm_ray.runs import resolve_model_dir, resolve_policy_dir
from genrm_ray.tasks import Problem, get_task


@dataclass(frozen=True)
class VerifierSpec:
    """One scoring pass over the pool."""

    name: str  # display name, e.g. "GenRM-CoT"
    kind: str  # "genrm" (p(Yes) through a generation backend) | "discriminative" (classifier head)
    mode: str  # "direct" | "cot"
    model_dir: str
    adaptive: bool = False


def verifier_specs(cfg: EvalConfig) -> list[VerifierSpec]:
    m = cfg.models
    out: list[VerifierSpec] = []  # resolve_* raise RunDirError naming the key (check_config ran them first)
    if m.genrm_cot:
        out.append(VerifierSpec("GenRM-CoT", "genrm", "cot", str(resolve_model_dir(m.genrm_cot, "models.genrm_cot"))))
        if cfg.adaptive_k:
            out.append(VerifierSpec("GenRM-CoT (adaptive K)", "genrm", "cot", out[-1].model_dir, adaptive=True))
    if m.genrm_direct:
        out.append(VerifierSpec("GenRM", "genrm", "direct", str(resolve_model_dir(m.genrm_direct, "models.genrm_direct"))))
    for name, path in m.extra_cot.items():
        out.append(VerifierSpec(name, "genrm", "cot", str(resolve_model_dir(path, f"models.extra_cot.{name}"))))
    for name, path in m.extra_direct.items():
        out.append(VerifierSpec(name, "genrm", "direct", str(resolve_model_dir(path, f"models.extra_direct.{name}"))))
    if m.discriminative:
        out.append(VerifierSpec("Discriminative RM", "discriminative", "direct",
                                str(resolve_model_dir(m.discriminative, "models.discriminative"))))
    if cfg.judge or cfg.judge_cot:
        from genrm_ray.models.pretrained import resolve_base_model

        judge = str(resolve_base_model(m.judge, "models.judge") if m.judge else resolve_policy_dir(m.policy, "models.policy"))
        if cfg.judge:
            out.append(VerifierSpec("LLM-as-a-Judge", "genrm", "direct", judge))
        if cfg.judge_cot:
            out.append(VerifierSpec("LLM-as-a-Judge (CoT)", "genrm", "cot", judge))
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvalInputError(f"verifier names must be unique; repeated: {dupes} (models.extra_* keys)")
    return out


class VerifierScorer:
    """Ray Data callable class: one verifier engine per actor, one score per solution row.

    Rows in: problem_id, sample_index, task, question, solution. Rows out add reward, p_yes (JSON
    list: one value for direct, one per rationale for CoT), k_used, rationale_tokens, unfinished and
    rationales (JSON list of CoT texts, up to the verification question).
    """

    def __init__(self, spec: dict[str, Any], cot: dict[str, Any], scoring: dict[str, Any]) -> None:
        import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)
        from genrm_ray import console

        console.stderr_to_engine_log()  # engine noise and shutdown tracebacks: the run's vllm.log
        self.spec = VerifierSpec(**spec)
        from genrm_ray.scoring import CotConfig, DiscriminativeScorer, GenRMScorer

        if self.spec.kind == "discriminative":
            self.scorer = DiscriminativeScorer(self.spec.model_dir, batch_size=scoring["discriminative_batch_size"])
            return
        from genrm_ray.engine import make_backend

        self.backend = make_backend(scoring["backend"], self.spec.model_dir, **scoring["engine_options"])
        self.scorer = GenRMScorer(self.backend, normalize=scoring["normalize"])
        self.settings = CotConfig(**{**cot, "adaptive": self.spec.adaptive})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from genrm_ray.scoring import VerifyItem

        items = [VerifyItem(str(t), str(q), str(s)) for t, q, s in zip(batch["task"], batch["question"], batch["solution"])]
        if self.spec.mode == "direct":
            scores = self.scorer.score_direct(items)
        else:
            scores = self.scorer.score_cot(items, self.settings, return_rationales=True)
        return {
            "problem_id": [str(x) for x in batch["problem_id"]],
            "sample_index": [int(x) for x in batch["sample_index"]],
            "reward": [s.reward for s in scores],
            "p_yes": [json.dumps(s.p_yes) for s in scores],
            "k_used": [s.k_used for s in scores],
            "rationale_tokens": [s.rationale_tokens for s in scores],
            "unfinished": [s.unfinished for s in scores],
            "rationales": [json.dumps(s.rationales or []) for s in scores],
        }


@dataclass
class PoolProblem:
    """One problem with its sampled solutions, graded, and every verifier's scores for them."""

    problem: Problem
    solutions: list[str]
    correct: list[bool]
    answers: list[str | None]
    truncated: list[bool] = field(default_factory=list)  # the policy hit pool.max_tokens
    solution_tokens: list[int] = field(default_factory=list)  # tokens the policy generated per solution
    scores: dict[str, list[float]] = field(default_factory=dict)  # verifier -> reward per solution
    p_yes: dict[str, list[list[float]]] = field(default_factory=dict)  # CoT verifiers: per rationale
    k_used: dict[str, list[int]] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    unfinished: dict[str, list[int]] = field(default_factory=dict)  # CoT: rationales cut at the budget
    rationales: dict[str, list[list[str]]] = field(default_factory=dict)  # CoT: the texts, per solution


def load_problem_sets(cfg: EvalConfig) -> dict[str, list[Problem]]:
    """Named problem sets: each generated split, and each file under its file name."""
    task = get_task(cfg.problems.task, cfg.problems.options)
    sets: dict[str, list[Problem]] = {}
    for split in cfg.problems.splits:
        n = cfg.problems.n_ood if split == "ood" else cfg.problems.n
        sets[split] = task.generate(split, n, seed=cfg.problems.seed)
    for f in cfg.problems.files:
        name = f"file:{Path(f).name}"
        if name in sets:
            raise EvalInputError(f"two problem files share the name {Path(f).name}")
        sets[name] = task.load(f)
    return sets


def graded(prob: Problem, solutions: list[str], truncated: list[bool], solution_tokens: list[int]) -> PoolProblem:
    """A problem's pool, graded by its task (sampled by build_pools or read back by load_pools)."""
    task = get_task(prob.task)
    return PoolProblem(prob, solutions, [task.is_correct(s, prob) for s in solutions],
                       [task.extract_answer(s) for s in solutions], truncated, solution_tokens)


def build_pools(cfg: EvalConfig, sets: dict[str, list[Problem]], log=print) -> dict[str, list[PoolProblem]]:
    """Sample pool.n solutions per problem with the policy (Ray Data + vLLM), grade them."""
    from genrm_ray.data.sampling import sample_solutions, truncated_share, truncation_warning

    # One sampling pass over every set (one engine load); a problem in two sets is sampled once.
    unique = {p.id: p for problems in sets.values() for p in problems}
    p = cfg.pool
    log(f"[pool] sampling {p.n} solutions for each of {len(unique)} problems (Ray Data + vLLM)")
    samples = sample_solutions(list(unique.values()), resolve_policy_dir(cfg.models.policy, "models.policy"), p)
    by_problem: dict[str, list] = {}
    for s in samples:
        by_problem.setdefault(s.problem_id, []).append(s)
    shared: dict[str, PoolProblem] = {}  # one object per problem: a problem in two sets is scored once
    for pid, prob in unique.items():
        got = by_problem.get(pid, [])
        if len(got) != p.n:
            raise RuntimeError(f"problem {pid}: expected {p.n} samples, got {len(got)}")
        shared[pid] = graded(prob, [s.solution for s in got], [s.finish_reason == "length" for s in got],
                             [s.tokens for s in got])
    pools = {name: [shared[prob.id] for prob in problems] for name, problems in sets.items()}
    for name, problems in sets.items():
        if warning := truncation_warning(truncated_share([s for prob in problems for s in by_problem[prob.id]]),
                                         "pool.max_tokens", p.max_tokens):
            log(f"[pool] {name}: {warning}")
    return pools


def load_pools(cfg: EvalConfig, sets: dict[str, list[Problem]], path: Path, log=print) -> dict[str, list[PoolProblem]]:
    """The pools of an earlier evaluation (its scores.jsonl, from write_scores): the first pool.n solutions
    of each problem, graded again by the task. Its verifier scores are not kept: every verifier of this
    config scores the solutions again."""
    f = reused_scores_file(path)
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    with f.open() as lines:
        for lineno, line in enumerate(lines, 1):
            try:
                r = json.loads(line)
                rows.setdefault(str(r["problem_id"]), {})[int(r["sample_index"])] = {
                    "solution": str(r["solution"]), "truncated": bool(r.get("truncated")),
                    "solution_tokens": r.get("solution_tokens")}
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise EvalInputError(f"reuse_pool: {f}:{lineno}: not a scores.jsonl row ({type(e).__name__}: {e})") from None
    n = cfg.pool.n
    shared: dict[str, PoolProblem] = {}
    for set_name, problems in sets.items():
        for prob in problems:
            if prob.id in shared:
                continue
            got = rows.get(prob.id)
            if got is None:
                raise EvalInputError(f"reuse_pool: problem {prob.id} of set {set_name!r} is not in {f}; it was made "
                                     "from other problems (problems.task / n / seed / files must select a subset of its)")
            if any(i not in got for i in range(n)):
                raise EvalInputError(f"reuse_pool: problem {prob.id} has {len(got)} solutions in {f}, fewer than "
                                     f"pool.n={n}")
            picked = [got[i] for i in range(n)]
            tokens = [r["solution_tokens"] for r in picked]
            shared[prob.id] = graded(prob, [r["solution"] for r in picked], [r["truncated"] for r in picked],
                                     [int(t) for t in tokens] if all(t is not None for t in tokens) else [])
    log(f"[pool] reusing the first {n} solutions of each of {len(shared)} problems from {f}")
    return {name: [shared[prob.id] for prob in problems] for name, problems in sets.items()}


def first_copies(solutions: Sequence[str]) -> list[int]:
    """For each solution, the index of its first identical copy in the list (itself when it is new)."""
    first: dict[str, int] = {}
    return [first.setdefault(sol, i) for i, sol in enumerate(solutions)]


def score_pools(cfg: EvalConfig, pools: dict[str, list[PoolProblem]], spec: VerifierSpec) -> dict[str, int]:
    """Score every solution of every pool with one verifier (a Ray Data pass); fills PoolProblem fields.

    With scoring.dedup, a solution repeated within a problem's pool is scored once and its copies get
    that result, rationale tokens and K included, so compute figures still count every copy. Returns
    the number of solutions and of scored ones."""
    import ray

    from genrm_ray.data.sampling import map_batches_without_restarts

    unique = {pp.problem.id: pp for pool in pools.values() for pp in pool}
    source = {pid: first_copies(pp.solutions) if cfg.scoring.dedup else list(range(len(pp.solutions)))
              for pid, pp in unique.items()}
    rows = [{"problem_id": pid, "sample_index": i, "task": pp.problem.task, "question": pp.problem.question,
             "solution": sol} for pid, pp in unique.items() for i, sol in enumerate(pp.solutions) if source[pid][i] == i]
    total = sum(len(pp.solutions) for pp in unique.values())
    s = cfg.scoring
    ds = map_batches_without_restarts(
        ray.data.from_items(rows), VerifierScorer,
        fn_constructor_kwargs=dict(spec=dataclasses.asdict(spec), cot=dataclasses.asdict(cfg.cot),
                                   scoring=dataclasses.asdict(s)),
        batch_size=s.batch_size, compute=ray.data.ActorPoolStrategy(size=s.concurrency), num_cpus=s.num_cpus,
        num_gpus=s.num_gpus,
    )
    got = {(str(r["problem_id"]), int(r["sample_index"])): r for r in ds.take_all()}
    if len(got) != len(rows):
        raise RuntimeError(f"{spec.name}: scored {len(got)} of {len(rows)} solutions")
    for pid, pp in unique.items():
        results = [got[(pid, source[pid][i])] for i in range(len(pp.solutions))]
        pp.scores[spec.name] = [float(r["reward"]) for r in results]
        pp.p_yes[spec.name] = [json.loads(r["p_yes"]) for r in results]
        pp.k_used[spec.name] = [int(r["k_used"]) for r in results]
        pp.tokens[spec.name] = [int(r["rationale_tokens"]) for r in results]
        if spec.mode == "cot":
            pp.unfinished[spec.name] = [int(r["unfinished"]) for r in results]
            pp.rationales[spec.name] = [json.loads(r["rationales"]) for r in results]
    return {"solutions": total, "scored": len(rows)}
