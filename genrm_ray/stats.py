"""Statistics computed from scores alone (no Ray, no model, no config), shared by evaluation, held-out
scoring and RL: Best-of-N, pass@N, self-consistency, confidence intervals, AUROC (per solution and
within problem), paired bootstrap differences.

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
