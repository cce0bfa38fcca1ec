"""Best-of-N arithmetic: expected accuracy of a verifier's top pick over random size-N subsets.

For one problem the policy sampled a pool of M solutions with correctness c_i; a verifier gave them
scores s_i. Best-of-N draws a uniformly random size-N subset and keeps its highest-scored solution,
ties broken uniformly at random. Its expected accuracy has a closed form: group the pool by score
level v (g_v solutions, k_v of them correct, L_v solutions scored lower). The subset's top level is v
for C(g_v + L_v, N) - C(L_v, N) of the C(M, N) subsets, and given that, every solution at level v is
equally likely to be the pick, so

    P(pick correct) = sum_v [C(g_v + L_v, N) - C(L_v, N)] / C(M, N) * k_v / g_v.

pass@N (an oracle picks) and pass@1 (a random pick) are the bounds every verifier lies between.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Sequence


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
