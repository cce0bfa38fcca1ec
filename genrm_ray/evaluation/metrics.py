"""Every metric of one problem set's pools (an evaluation's numbers, from its config and scores): the
bounds, each verifier's Best-of-N curve and AUROCs, the K curve, compute-matched and adaptive-K
figures, and the paired comparisons. The statistics themselves (Best-of-N's exact expectation, CIs,
AUROC, paired bootstrap) are genrm_ray.stats.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from genrm_ray.evaluation.rationales import diagnose_rationales
from genrm_ray.stats import (
    best_of_n_accuracy,
    majority_vote_accuracy,
    mean_ci95,
    paired_bootstrap,
    pass_at_n,
    per_solution_auroc,
    within_problem_auroc,
)
from genrm_ray.tasks import get_task

if TYPE_CHECKING:  # type hints only: metrics stay importable without Ray
    from genrm_ray.evaluation.config import EvalConfig
    from genrm_ray.evaluation.pools import PoolProblem, VerifierSpec


# ---- one problem set's pools --------------------------------------------------------------------


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
    """Every number of one problem set: bounds, each verifier's curve and AUROCs, K curve, adaptive K
    compute, and the paired comparisons."""
    ns = [n for n in cfg.ns if n <= cfg.pool.n]
    out: dict[str, Any] = {
        "n_problems": len(pool),
        "pool_size": cfg.pool.n,
        "policy_accuracy": sum(sum(pp.correct) for pp in pool) / (len(pool) * cfg.pool.n),
        "truncated_share": sum(sum(pp.truncated) for pp in pool) / (len(pool) * cfg.pool.n),
        "pass@1": _ci([pass_at_n(pp.correct, 1) for pp in pool]),
        "pass@n": {str(n): _ci([pass_at_n(pp.correct, n) for pp in pool]) for n in ns},
        "best_of_n": {},
    }
    if cfg.self_consistency:
        out["best_of_n"]["Self-consistency"] = {
            str(n): _ci([majority_vote_accuracy(pp.answers, pp.correct, n, cfg.majority_subsets,
                                                seed=hash_seed(pp.problem.id, n)) for pp in pool]) for n in ns}
    correct = [pp.correct for pp in pool]
    for spec in verifiers:
        scores = [pp.scores[spec.name] for pp in pool]
        out["best_of_n"][spec.name] = best_of_n_curve(pool, scores, ns)
        within, counted = within_problem_auroc(scores, correct)
        out.setdefault("auroc", {})[spec.name] = {"per_solution": per_solution_auroc(scores, correct),
                                                  "within_problem": within, "problems_with_both": counted}
        if spec.mode == "cot":  # rationales that never reached the verdict within cot.max_rationale_tokens
            drawn = sum(sum(pp.k_used[spec.name]) for pp in pool)
            cut = sum(sum(pp.unfinished[spec.name]) for pp in pool)
            out.setdefault("cot_unfinished_share", {})[spec.name] = cut / drawn if drawn else 0.0
            if all(spec.name in pp.rationales for pp in pool):
                diagnosis = diagnose_rationales(get_task(cfg.problems.task), pool, spec.name)
                if diagnosis is not None:
                    out.setdefault("rationale_diagnosis", {})[spec.name] = diagnosis
    fixed = next((s for s in verifiers if s.mode == "cot" and not s.adaptive and s.name == "GenRM-CoT"), None)
    if fixed is not None:
        out["cot_k_curve"] = {
            str(k): best_of_n_curve(pool, [prefix_rewards(pp, fixed.name, k) for pp in pool], [cfg.report_n])[str(cfg.report_n)]
            for k in sorted(set(cfg.k_curve) | {cfg.cot.k})}
        adaptive = next((s for s in verifiers if s.adaptive), None)
        if adaptive is not None:
            out["adaptive_k"] = adaptive_compute(cfg, pool, fixed.name, adaptive.name)
    out["paired"] = paired_comparisons(cfg, pool, verifiers)
    if any(pp.solution_tokens for pp in pool):
        out["compute_matched"] = compute_matched(cfg, pool, verifiers, out["best_of_n"])
    return out


def compute_matched(cfg: EvalConfig, pool: Sequence[PoolProblem], verifiers: Sequence[VerifierSpec],
                    best_of_n: dict[str, Any]) -> dict[str, Any]:
    """Best-of-N accuracy against the tokens generated per problem (the policy's solutions plus the
    verifier's rationales): self-consistency over N solutions costs N solutions; GenRM-CoT with K
    rationales costs N * (solution + K rationales); a direct verifier generates nothing beyond the
    solutions (its prefill is not counted). ``pays_from``: the cheapest GenRM-CoT point that is more
    accurate than every self-consistency point costing no more, at N >= 2 (at N = 1 nothing is chosen:
    both are pass@1, and their estimators differ only in rounding); None when none is."""
    ns = [n for n in cfg.ns if n <= cfg.pool.n]
    solution = sum(sum(pp.solution_tokens) for pp in pool) / sum(len(pp.solution_tokens) for pp in pool)
    curves: dict[str, list[dict[str, float]]] = {}
    if "Self-consistency" in best_of_n:
        curves["Self-consistency"] = [{"n": n, "tokens": n * solution, "accuracy": best_of_n["Self-consistency"][str(n)]["mean"]}
                                      for n in ns]
    for spec in verifiers:
        if spec.mode == "direct":
            curves[spec.name] = [{"n": n, "tokens": n * solution, "accuracy": best_of_n[spec.name][str(n)]["mean"]}
                                 for n in ns]
            continue
        drawn = sum(sum(pp.k_used[spec.name]) for pp in pool)
        per_rationale = sum(sum(pp.tokens[spec.name]) for pp in pool) / drawn if drawn else 0.0
        if spec.adaptive:
            mean_k = drawn / sum(len(pp.solutions) for pp in pool)
            curves[spec.name] = [{"n": n, "tokens": n * (solution + mean_k * per_rationale),
                                  "accuracy": best_of_n[spec.name][str(n)]["mean"]} for n in ns]
            continue
        for k in sorted(set(cfg.k_curve) | {cfg.cot.k}):
            accuracy = best_of_n_curve(pool, [prefix_rewards(pp, spec.name, k) for pp in pool], ns)
            curves[f"{spec.name} K={k}"] = [{"n": n, "tokens": n * (solution + k * per_rationale),
                                             "accuracy": accuracy[str(n)]["mean"]} for n in ns]
    pays_from = None
    sc = curves.get("Self-consistency", [])
    for name, points in curves.items():
        if "CoT" not in name or "Judge" in name:
            continue
        for p in points:
            if p["n"] < 2:
                continue
            cheaper = [q["accuracy"] for q in sc if q["tokens"] <= p["tokens"]]
            if p["accuracy"] > max(cheaper, default=0.0) and (pays_from is None or p["tokens"] < pays_from["tokens"]):
                pays_from = {"verifier": name, **p}
    return {"solution_tokens": solution, "curves": curves, "pays_from": pays_from}


def per_problem_best_of_n(cfg: EvalConfig, pool: Sequence[PoolProblem], name: str, n: int) -> list[float]:
    """Best-of-n accuracy of one verifier (or "Self-consistency" / "pass@1") on each problem."""
    if name == "pass@1":
        return [pass_at_n(pp.correct, 1) for pp in pool]
    if name == "Self-consistency":
        return [majority_vote_accuracy(pp.answers, pp.correct, n, cfg.majority_subsets, seed=hash_seed(pp.problem.id, n))
                for pp in pool]
    return [best_of_n_accuracy(pp.scores[name], pp.correct, n) for pp in pool]


def paired_comparisons(cfg: EvalConfig, pool: Sequence[PoolProblem], verifiers: Sequence[VerifierSpec]) -> dict[str, Any]:
    """Every pair of verifiers (and the self-consistency / random-pick baselines), compared at
    Best-of-report_n on the same problems and pools: "A vs B" -> mean(A - B) with a paired 95%
    bootstrap CI over problems. A claim that A beats B needs a CI that excludes 0."""
    n = min(cfg.report_n, cfg.pool.n)
    names = [s.name for s in verifiers] + (["Self-consistency"] if cfg.self_consistency else []) + ["pass@1"]
    per = {name: per_problem_best_of_n(cfg, pool, name, n) for name in names}
    out: dict[str, Any] = {"n": n}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = paired_bootstrap(per[a], per[b], seed=hash_seed(f"{a}|{b}", n))
            out[f"{a} vs {b}"] = {"diff": d.diff, "low": d.low, "high": d.high, "excludes_zero": d.excludes_zero}
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
