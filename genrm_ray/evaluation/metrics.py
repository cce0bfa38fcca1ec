"""The numbers of an evaluation, computed from scores alone (no Ray, no model): Best-of-N, pass@N,
self-consistency, confidence intervals, AUROC (per solution and within problem), paired bootstrap
differences between verifiers, and every metric of one problem set's pools.

Best-of-N: for one problem the policy sampled a pool of M solutions with correctness c_i; a verifier
gave them scores s_i. Best-of-N draws a uniformly random size-N subset and keeps its highest-scored
solution, ties broken uniformly at random. Its expected accuracy has a closed form: group the pool by
score level v (g_v solutions, k_v of them correct, L_v solutions scored lower). The subset's top level
is v for C(g_v + L_v, N) - C(L_v, N) of the C(M, N) subsets, and given that, every solution at level v
is equally likely to be the pick, so

    P(pick correct) = sum_v [C(g_v + L_v, N) - C(L_v, N)] / C(M, N) * k_v / g_v.

pass@N (an oracle picks) and pass@1 (a random pick) are the bounds every verifier lies between.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genrm_ray.evaluation.rationales import diagnose_rationales
from genrm_ray.tasks import get_task

if TYPE_CHECKING:  # type hints only: metrics stay importable without Ray
    from genrm_ray.evaluation.config import EvalConfig
    from genrm_ray.evaluation.pools import PoolProblem, VerifierSpec



def best_of_n_accuracy(scores: Sequence[float], correct: Sequence[bool], n: int) -> float:
    """Exact expected accuracy of the top-scored pick among a random size-n subset of the pool."""
    m = len(scores)
    if len(correct) != m:
        raise ValueError(f"{m} scores but {len(correct)} correctness labels")
    if not 1 <= n <= m:
        raise ValueError(f"n={n} must be between 1 and the pool size {m}")
    levels: dict[float, list[bool]] = {}
    for s, c in zip(scores, correct):
        if math.isnan(s):
            raise ValueError("a score is NaN; score every solution before computing Best-of-N")
        levels.setdefault(float(s), []).append(bool(c))
    total = math.comb(m, n)
    lower = 0
    acc = 0.0
    for v in sorted(levels):
        group = levels[v]
        with_top_v = math.comb(len(group) + lower, n) - math.comb(lower, n)
        acc += with_top_v / total * (sum(group) / len(group))
        lower += len(group)
    return acc


def pass_at_n(correct: Sequence[bool], n: int) -> float:
    """Probability that a random size-n subset holds at least one correct solution (oracle pick)."""
    m, k = len(correct), sum(bool(c) for c in correct)
    if not 1 <= n <= m:
        raise ValueError(f"n={n} must be between 1 and the pool size {m}")
    return 1.0 - math.comb(m - k, n) / math.comb(m, n)


def majority_vote_accuracy(
    answers: Sequence[Hashable | None],
    correct: Sequence[bool],
    n: int,
    subsets: int = 200,
    seed: int = 0,
) -> float:
    """Self-consistency: accuracy of the most frequent final answer in random size-n subsets.

    Solutions with no extractable answer (None) do not vote; a subset with no votes picks a random
    member. Ties between answers are broken at random. Estimated over ``subsets`` random subsets
    (exact enumeration is rarely affordable at M=32, N=16).
    """
    m = len(answers)
    if len(correct) != m:
        raise ValueError(f"{m} answers but {len(correct)} correctness labels")
    if not 1 <= n <= m:
        raise ValueError(f"n={n} must be between 1 and the pool size {m}")
    rng = random.Random(seed)
    hits = 0.0
    for _ in range(subsets):
        idx = rng.sample(range(m), n)
        votes = Counter(answers[i] for i in idx if answers[i] is not None)
        if not votes:
            hits += correct[rng.choice(idx)]
            continue
        top = max(votes.values())
        winner = rng.choice(sorted((a for a, c in votes.items() if c == top), key=repr))
        # Every solution carrying the winning answer is equally right or wrong only if grading is a
        # function of the answer; average over them to stay exact when it is not.
        carriers = [i for i in idx if answers[i] == winner]
        hits += sum(correct[i] for i in carriers) / len(carriers)
    return hits / subsets


@dataclass(frozen=True)
class MeanCI:
    mean: float
    low: float
    high: float
    n: int


def mean_ci95(values: Sequence[float]) -> MeanCI:
    """Mean across problems with a normal-approximation 95% confidence interval."""
    k = len(values)
    if k == 0:
        raise ValueError("no values")
    mean = sum(values) / k
    if k == 1:
        return MeanCI(mean, mean, mean, 1)
    var = sum((v - mean) ** 2 for v in values) / (k - 1)
    half = 1.96 * math.sqrt(var / k)
    return MeanCI(mean, mean - half, mean + half, k)


def auroc(scores: list[float], labels: list[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties 1/2."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        raise ValueError(f"AUROC needs both classes; got {len(pos)} positives and {len(neg)} negatives")
    # Rank-sum (Mann-Whitney U) with average ranks for ties: O(n log n).
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def per_solution_auroc(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]]) -> float | None:
    """AUROC over every solution of every problem pooled: does the score separate right from wrong
    across the whole set? None when the set has only one class."""
    flat_s = [x for s in scores for x in s]
    flat_c = [bool(x) for c in correct for x in c]
    if all(flat_c) or not any(flat_c):
        return None
    return auroc(flat_s, flat_c)


def within_problem_auroc(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]]) -> tuple[float | None, int]:
    """Mean over problems (each weighted equally) of the AUROC among that problem's own solutions:
    the ranking Best-of-N uses. Problems whose pool is all right or all wrong have none and are left
    out; returns (mean or None, how many problems counted)."""
    per = [auroc(list(s), [bool(x) for x in c]) for s, c in zip(scores, correct) if any(c) and not all(c)]
    return (sum(per) / len(per) if per else None), len(per)


@dataclass(frozen=True)
class PairedDiff:
    """mean(a - b) over problems, with a 95% percentile-bootstrap CI that resamples problems."""

    diff: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0) -> PairedDiff:
    """Paired difference of two verifiers' per-problem values (e.g. Best-of-N accuracy) on the same
    problems and pools: the problems are resampled with replacement, the pairs stay together."""
    import numpy as np

    if len(a) != len(b) or not a:
        raise ValueError(f"paired_bootstrap needs two equally long non-empty lists, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # chunks keep memory at 1000 x problems
        count = min(1000, resamples - start)
        means[start:start + count] = d[rng.integers(0, len(d), size=(count, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedDiff(float(d.mean()), float(low), float(high), len(d))


def paired_auroc_bootstrap(a: Sequence[float], b: Sequence[float], labels: Sequence[bool], groups: Sequence[Hashable],
                           resamples: int = 2000, seed: int = 0) -> dict[str, PairedDiff | None]:
    """Paired differences AUROC(a) - AUROC(b) of two verifiers' scores on the same labelled items,
    whole-set and within-problem, with 95% bootstrap CIs that resample the groups (problems).

    ``within_problem_auroc`` is None when no group has both a right and a wrong item.
    """
    import numpy as np

    if not (len(a) == len(b) == len(labels) == len(groups)) or not a:
        raise ValueError(f"paired_auroc_bootstrap needs equally long non-empty lists, got {len(a)}, {len(b)}, "
                         f"{len(labels)} labels, {len(groups)} groups")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    ids = list(members.values())
    ys = [bool(y) for y in labels]
    if all(ys) or not any(ys):
        raise ValueError(f"AUROC needs both classes; got {sum(ys)} positives among {len(ys)} items")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        ix = [i for j in rng.integers(0, len(ids), size=len(ids)) for i in ids[j]]
        sample_y = [ys[i] for i in ix]
        if all(sample_y) or not any(sample_y):
            continue  # a resample with one class has no AUROC
        diffs.append(auroc([a[i] for i in ix], sample_y) - auroc([b[i] for i in ix], sample_y))
    low, high = np.percentile(diffs, [2.5, 97.5])
    whole = PairedDiff(auroc(list(a), ys) - auroc(list(b), ys), float(low), float(high), len(ids))
    both = [ix for ix in ids if any(ys[i] for i in ix) and not all(ys[i] for i in ix)]
    within = None
    if both:
        per_a = [auroc([a[i] for i in ix], [ys[i] for i in ix]) for ix in both]
        per_b = [auroc([b[i] for i in ix], [ys[i] for i in ix]) for ix in both]
        within = paired_bootstrap(per_a, per_b, resamples=resamples, seed=seed)
    return {"auroc": whole, "within_problem_auroc": within}


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
