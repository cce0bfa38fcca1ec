"""genrm_ray.evaluation.metrics: Best-of-N against brute-force enumeration, ties, bounds,
self-consistency, CIs, AUROC, and every metric of hand-built pools."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrm_ray.evaluation.config import EvalConfig
from genrm_ray.evaluation.metrics import compute_matched, pool_metrics
from genrm_ray.evaluation.pools import PoolProblem, VerifierSpec, first_copies
from genrm_ray.evaluation.report import markdown_report
from genrm_ray.stats import (
    auroc,
    best_of_n_accuracy,
    majority_vote_accuracy,
    mean_ci95,
    paired_auroc_bootstrap,
    paired_bootstrap,
    pass_at_n,
    per_solution_auroc,
    within_problem_auroc,
)
from genrm_ray.tasks import get_task


def brute_force(scores, correct, n):
    """Enumerate every subset; within a subset, average over the tied top solutions."""
    total = 0.0
    subsets = list(itertools.combinations(range(len(scores)), n))
    for idx in subsets:
        top = max(scores[i] for i in idx)
        tied = [i for i in idx if scores[i] == top]
        total += sum(correct[i] for i in tied) / len(tied)
    return total / len(subsets)


pools = st.integers(1, 8).flatmap(
    lambda m: st.tuples(
        st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=m, max_size=m),  # many ties
        st.lists(st.booleans(), min_size=m, max_size=m),
        st.integers(1, m),
    )
)


@settings(max_examples=300, deadline=None)
@given(pools)
def test_exact_formula_matches_brute_force(pool):
    scores, correct, n = pool
    assert best_of_n_accuracy(scores, correct, n) == pytest.approx(brute_force(scores, correct, n), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(pools)
def test_never_above_the_oracle(pool):
    # Only the upper bound is a theorem: a bad verifier may fall below pass@1.
    scores, correct, n = pool
    assert best_of_n_accuracy(scores, correct, n) <= pass_at_n(correct, n) + 1e-12


def test_random_tie_breaking_and_oracle():
    correct = [True, False, False, False]
    # All tied: the pick is random, so Best-of-N equals pass@1 for every N.
    for n in range(1, 5):
        assert best_of_n_accuracy([0.5] * 4, correct, n) == pytest.approx(0.25)
    # A perfect verifier reaches pass@N.
    for n in range(1, 5):
        assert best_of_n_accuracy([0.9, 0.1, 0.2, 0.3], correct, n) == pytest.approx(pass_at_n(correct, n))
    # An adversarial one picks the correct solution only when it is alone in the subset.
    assert best_of_n_accuracy([0.0, 1.0, 1.0, 1.0], correct, 2) == 0.0
    assert best_of_n_accuracy([0.0, 1.0, 1.0, 1.0], correct, 1) == pytest.approx(0.25)


def test_pass_at_n_closed_form():
    correct = [True] * 3 + [False] * 29
    assert pass_at_n(correct, 1) == pytest.approx(3 / 32)
    assert pass_at_n(correct, 32) == 1.0
    assert pass_at_n(correct, 16) == pytest.approx(1 - math.comb(29, 16) / math.comb(32, 16))


def test_bad_arguments():
    with pytest.raises(ValueError, match="between 1 and the pool size 2"):
        best_of_n_accuracy([0.1, 0.2], [True, False], 3)
    with pytest.raises(ValueError, match="2 scores but 1"):
        best_of_n_accuracy([0.1, 0.2], [True], 1)
    with pytest.raises(ValueError, match="NaN"):
        best_of_n_accuracy([float("nan")], [True], 1)


def test_majority_vote_matches_enumeration_on_a_small_pool():
    answers = ["a", "a", "b", "b", "b", None]
    correct = [True, True, False, False, False, False]
    exact = 0.0
    subsets = list(itertools.combinations(range(6), 3))
    for idx in subsets:
        votes = {}
        for i in idx:
            if answers[i] is not None:
                votes[answers[i]] = votes.get(answers[i], 0) + 1
        top = max(votes.values())
        winners = [a for a, c in votes.items() if c == top]
        exact += sum(1.0 for w in winners if w == "a") / len(winners)
    exact /= len(subsets)
    est = majority_vote_accuracy(answers, correct, 3, subsets=20000, seed=1)
    assert est == pytest.approx(exact, abs=0.01)


def test_mean_ci95():
    ci = mean_ci95([0.0, 1.0] * 50)
    assert ci.mean == 0.5 and ci.low < 0.5 < ci.high and ci.n == 100
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * math.sqrt(0.25 * 100 / 99 / 100))
    with pytest.raises(ValueError):
        mean_ci95([])


def test_auroc_matches_pairwise_definition():
    scores = [0.9, 0.2, 0.7, 0.7, 0.1, 0.4]
    labels = [True, False, True, False, False, True]
    pairs = [(p, n) for p, yp in zip(scores, labels) if yp for n, yn in zip(scores, labels) if not yn]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auroc(scores, labels) == pytest.approx(expected)
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.5, 0.6], [True, True])


# -- metrics of hand-built pools ------------------------------------------------------------------------


def _pool(correct_lists, seed=0):
    import random

    rng = random.Random(seed)
    task = get_task("last_letter")
    problems = task.generate("test", len(correct_lists), seed=3)
    pool = []
    for prob, correct in zip(problems, correct_lists):
        answers = [prob.answer if c else rng.choice(["x", "y", None]) for c in correct]
        pool.append(PoolProblem(prob, [f"s{i}" for i in range(len(correct))], list(correct), answers))
    return pool


def _cfg(**kw) -> EvalConfig:
    cfg = EvalConfig()
    cfg.pool.n = 8
    cfg.ns = [1, 2, 4, 8]
    cfg.report_n = 4
    cfg.cot.k = 4
    cfg.k_curve = [1, 2, 4]
    cfg.majority_subsets = 400
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_metrics_bounds_oracle_and_random_verifiers():
    pool = _pool([[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0, 0], [0] * 8, [1] * 8])
    specs = [VerifierSpec("perfect", "genrm", "direct", "-"), VerifierSpec("constant", "genrm", "direct", "-"),
             VerifierSpec("inverted", "genrm", "direct", "-")]
    for pp in pool:
        pp.scores["perfect"] = [float(c) for c in pp.correct]
        pp.scores["constant"] = [0.5] * 8
        pp.scores["inverted"] = [1.0 - c for c in pp.correct]
    m = pool_metrics(_cfg(), pool, specs)
    pass1 = (1 / 8 + 3 / 8 + 0 + 1) / 4
    assert m["pass@1"]["mean"] == pytest.approx(pass1)
    assert m["policy_accuracy"] == pytest.approx(pass1)
    oracle = [m["pass@n"][str(n)]["mean"] for n in (1, 2, 4, 8)]
    assert oracle == sorted(oracle) and oracle[-1] == pytest.approx(0.75)
    for n in ("1", "2", "4", "8"):
        assert m["best_of_n"]["perfect"][n]["mean"] == pytest.approx(m["pass@n"][n]["mean"])
        assert m["best_of_n"]["constant"][n]["mean"] == pytest.approx(pass1)  # ties broken at random
        assert m["best_of_n"]["inverted"][n]["mean"] <= pass1 + 1e-12
        c = m["best_of_n"]["perfect"][n]
        assert c["low"] <= c["mean"] <= c["high"]
    for name, curve in m["best_of_n"].items():  # Best-of-1 is a random pick whatever the verifier
        # (self-consistency is estimated from random subsets, so only approximately)
        assert curve["1"]["mean"] == pytest.approx(pass1, abs=0.05 if name == "Self-consistency" else 1e-12)
    # Self-consistency: the last problem is always right, the third never.
    assert 0.25 <= m["best_of_n"]["Self-consistency"]["8"]["mean"] <= 0.75
    text = markdown_report({"report_n": 4, "sets": {"test": m}})
    assert "| perfect |" in text and "| Self-consistency |" in text and "N=8" in text


def test_cot_k_curve_uses_the_first_k_rationales_and_adaptive_compute_is_counted():
    pool = _pool([[1, 0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 1]])
    fixed = VerifierSpec("GenRM-CoT", "genrm", "cot", "-")
    adaptive = VerifierSpec("GenRM-CoT (adaptive K)", "genrm", "cot", "-", adaptive=True)
    for pp in pool:
        # First rationale misleading (wrong ones look best), the next three right: K=1 is worse than K=4.
        pp.p_yes["GenRM-CoT"] = [[0.2 if c else 0.9] + [0.95 if c else 0.05] * 3 for c in pp.correct]
        pp.scores["GenRM-CoT"] = [sum(p) / 4 for p in pp.p_yes["GenRM-CoT"]]
        pp.tokens["GenRM-CoT"] = [40] * 8
        pp.k_used["GenRM-CoT"] = [4] * 8
        pp.unfinished["GenRM-CoT"] = [1] * 8  # one of the four rationales cut at the budget
        pp.p_yes[adaptive.name] = [[0.95 if c else 0.05] * 2 for c in pp.correct]
        pp.scores[adaptive.name] = [p[0] for p in pp.p_yes[adaptive.name]]
        pp.tokens[adaptive.name] = [20] * 8
        pp.k_used[adaptive.name] = [2] * 8
        pp.unfinished[adaptive.name] = [0] * 8
    m = pool_metrics(_cfg(), pool, [fixed, adaptive])
    assert m["cot_unfinished_share"] == {"GenRM-CoT": 0.25, adaptive.name: 0.0}
    k1 = [best_of_n_accuracy([p[0] for p in pp.p_yes["GenRM-CoT"]], pp.correct, 4) for pp in pool]
    assert m["cot_k_curve"]["1"]["mean"] == pytest.approx(sum(k1) / 2)
    assert m["cot_k_curve"]["4"]["mean"] == pytest.approx(m["best_of_n"]["GenRM-CoT"]["4"]["mean"])
    assert m["cot_k_curve"]["1"]["mean"] < m["cot_k_curve"]["4"]["mean"]
    a = m["adaptive_k"]
    assert a["adaptive"] == {"accuracy": pytest.approx(m["pass@n"]["4"]["mean"]), "rationales": 32, "tokens": 320,
                             "mean_k": 2.0}
    assert a["fixed_k"]["rationales"] == 64 and a["fixed_k"]["tokens"] == 640
    assert a["fixed_k"]["rationales_saved"] == pytest.approx(0.5)
    match = a["fixed_k_matching_accuracy"]
    # K=2: mean(0.2, 0.95) = 0.575 on correct vs mean(0.9, 0.05) = 0.475 on wrong: already perfect.
    assert match["k"] == 2 and match["rationales"] == 32 and match["tokens"] == 320


def test_best_of_n_exact_against_enumeration_on_a_pool():
    scores = [0.3, 0.9, 0.9, 0.1, 0.5, 0.9]
    correct = [True, False, True, False, True, False]
    for n in range(1, 7):
        subsets = list(itertools.combinations(range(6), n))
        brute = 0.0
        for sub in subsets:
            top = max(scores[i] for i in sub)
            winners = [i for i in sub if scores[i] == top]
            brute += sum(correct[i] for i in winners) / len(winners)
        assert best_of_n_accuracy(scores, correct, n) == pytest.approx(brute / len(subsets))


# -- paired comparisons and AUROCs ---------------------------------------------------------------------


def _pairwise_auroc(scores, labels) -> float:
    pairs = [(p, n) for p, yp in zip(scores, labels) if yp for n, yn in zip(scores, labels) if not yn]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_paired_bootstrap_matches_the_enumerated_bootstrap_distribution():
    import numpy as np

    a = [0.9, 0.4, 0.75, 0.5, 0.3]
    b = [0.6, 0.5, 0.25, 0.3, 0.3]
    d = np.subtract(a, b)
    # Every one of the 5^5 resamples of the problems is equally likely: the exact bootstrap distribution.
    exact = [d[list(idx)].mean() for idx in itertools.product(range(5), repeat=5)]
    low, high = np.percentile(exact, [2.5, 97.5])
    got = paired_bootstrap(a, b, resamples=60_000, seed=1)
    assert got.diff == pytest.approx(d.mean()) and got.n == 5
    assert got.low == pytest.approx(low, abs=0.01) and got.high == pytest.approx(high, abs=0.01)
    assert got.excludes_zero == (low > 0 or high < 0)
    same = paired_bootstrap(a, a)
    assert same.diff == same.low == same.high == 0.0 and not same.excludes_zero
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_auroc_per_solution_and_within_problem_against_brute_force():
    scores = [[0.9, 0.2, 0.4], [0.1, 0.8, 0.8, 0.3], [0.5, 0.5], [0.7, 0.6]]
    correct = [[True, False, True], [False, True, False, False], [True, True], [False, True]]
    flat_s = [x for s in scores for x in s]
    flat_c = [x for c in correct for x in c]
    assert per_solution_auroc(scores, correct) == pytest.approx(_pairwise_auroc(flat_s, flat_c))
    within, counted = within_problem_auroc(scores, correct)
    per = [_pairwise_auroc(s, c) for s, c in zip(scores, correct) if any(c) and not all(c)]
    assert counted == 3 and within == pytest.approx(sum(per) / 3)  # the all-correct problem has no AUROC
    assert per_solution_auroc([[0.1, 0.2]], [[True, True]]) is None
    assert within_problem_auroc([[0.1, 0.2]], [[True, True]]) == (None, 0)


def test_paired_auroc_bootstrap_against_brute_force():
    """Two verifiers on the same held-out pairs: the point differences are the brute-force AUROC
    differences; the whole-set CI matches the enumerated bootstrap over problems; a verifier compared
    with itself differs by exactly 0."""
    import numpy as np

    groups = ["p1", "p1", "p1", "p2", "p2", "p3", "p3"]
    labels = [True, False, False, True, False, True, True]
    a = [0.9, 0.2, 0.6, 0.4, 0.5, 0.7, 0.8]
    b = [0.3, 0.5, 0.6, 0.6, 0.1, 0.2, 0.9]
    got = paired_auroc_bootstrap(a, b, labels, groups, resamples=30_000, seed=2)
    whole = got["auroc"]
    assert whole.diff == pytest.approx(_pairwise_auroc(a, labels) - _pairwise_auroc(b, labels)) and whole.n == 3
    # The exact bootstrap distribution: each of the 3^3 resamples of problems, those with both classes.
    members = {g: [i for i, h in enumerate(groups) if h == g] for g in ("p1", "p2", "p3")}
    exact = []
    for pick in itertools.product(members, repeat=3):
        ix = [i for g in pick for i in members[g]]
        ys = [labels[i] for i in ix]
        if any(ys) and not all(ys):
            exact.append(_pairwise_auroc([a[i] for i in ix], ys) - _pairwise_auroc([b[i] for i in ix], ys))
    # A discrete distribution: the bootstrap's percentiles converge to its inverse-CDF quantiles.
    low, high = np.percentile(exact, [2.5, 97.5], method="inverted_cdf")
    assert whole.low == pytest.approx(low, abs=0.02) and whole.high == pytest.approx(high, abs=0.02)
    # Within a problem: p1 and p2 have both classes; p3 (all right) counts for neither.
    within = got["within_problem_auroc"]
    per = [(_pairwise_auroc(a[:3], labels[:3]) - _pairwise_auroc(b[:3], labels[:3])),
           (_pairwise_auroc(a[3:5], labels[3:5]) - _pairwise_auroc(b[3:5], labels[3:5]))]
    assert within.n == 2 and within.diff == pytest.approx(sum(per) / 2)
    same = paired_auroc_bootstrap(a, a, labels, groups, resamples=200)
    assert same["auroc"].diff == same["auroc"].low == same["auroc"].high == 0.0
    with pytest.raises(ValueError, match="both classes"):
        paired_auroc_bootstrap(a, b, [True] * 7, groups)
    with pytest.raises(ValueError, match="equally long"):
        paired_auroc_bootstrap(a, b[:-1], labels, groups)


def test_pool_metrics_carry_aurocs_and_paired_comparisons():
    pool = _pool([[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0, 0, 0]])
    specs = [VerifierSpec("perfect", "genrm", "direct", "-"), VerifierSpec("constant", "genrm", "direct", "-")]
    for pp in pool:
        pp.scores["perfect"] = [float(c) for c in pp.correct]
        pp.scores["constant"] = [0.5] * 8
    m = pool_metrics(_cfg(), pool, specs)
    assert m["auroc"]["perfect"] == {"per_solution": 1.0, "within_problem": 1.0, "problems_with_both": 4}
    assert m["auroc"]["constant"]["per_solution"] == 0.5
    p = m["paired"]
    assert p["n"] == 4
    assert set(p) == {"n", "perfect vs constant", "perfect vs Self-consistency", "perfect vs pass@1",
                      "constant vs Self-consistency", "constant vs pass@1", "Self-consistency vs pass@1"}
    gap = m["best_of_n"]["perfect"]["4"]["mean"] - m["best_of_n"]["constant"]["4"]["mean"]
    assert p["perfect vs constant"]["diff"] == pytest.approx(gap) and p["perfect vs constant"]["excludes_zero"]
    assert p["constant vs pass@1"]["diff"] == pytest.approx(0.0, abs=1e-12)  # ties: a random pick
    text = markdown_report({"report_n": 4, "sets": {"test": m}})
    assert "| perfect vs constant | +" in text and "within-problem AUROC" in text


def test_compute_matched_counts_solution_and_rationale_tokens():
    pool = _pool([[1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0, 0, 0]])
    cot = VerifierSpec("GenRM-CoT", "genrm", "cot", "-")
    for pp in pool:
        pp.solution_tokens = [50] * 8
        pp.p_yes["GenRM-CoT"] = [[0.9 if c else 0.1] * 4 for c in pp.correct]  # a perfect verifier
        pp.scores["GenRM-CoT"] = [p[0] for p in pp.p_yes["GenRM-CoT"]]
        pp.tokens["GenRM-CoT"] = [4 * 25] * 8  # 4 rationales of 25 tokens
        pp.k_used["GenRM-CoT"] = [4] * 8
        pp.unfinished["GenRM-CoT"] = [0] * 8
    m = pool_metrics(_cfg(adaptive_k=False), pool, [cot])
    c = m["compute_matched"]
    assert c["solution_tokens"] == 50
    assert [p["tokens"] for p in c["curves"]["Self-consistency"]] == [50, 100, 200, 400]
    assert [p["tokens"] for p in c["curves"]["GenRM-CoT K=2"]] == [100, 200, 400, 800]  # N * (50 + 2 * 25)
    k4 = c["curves"]["GenRM-CoT K=4"]
    assert [p["accuracy"] for p in k4] == pytest.approx([m["best_of_n"]["GenRM-CoT"][n]["mean"] for n in ("1", "2", "4", "8")])
    # Self-consistency is poor here (wrong answers spread, the right ones are rare), the verifier perfect:
    # the first CoT point above every SC point of equal or lower cost.
    p = c["pays_from"]
    sc = c["curves"]["Self-consistency"]
    assert p is not None and p["accuracy"] > max(q["accuracy"] for q in sc if q["tokens"] <= p["tokens"])
    assert p["n"] >= 2  # at N = 1 nothing is chosen
    text = markdown_report({"report_n": 4, "sets": {"test": m}})
    assert "verification pays from" in text
    # A CoT point at N = 1 a rounding error above self-consistency's, and below it at every N >= 2: no choice
    # the verifier made pays, so nothing does.
    adaptive = VerifierSpec("GenRM-CoT (adaptive K)", "genrm", "cot", "-", adaptive=True)
    best = {"Self-consistency": {"1": {"mean": 0.3}, "2": {"mean": 0.4}, "4": {"mean": 0.5}, "8": {"mean": 0.6}},
            adaptive.name: {"1": {"mean": 0.3 + 1e-9}, "2": {"mean": 0.35}, "4": {"mean": 0.4}, "8": {"mean": 0.45}}}
    for pp in pool:
        pp.k_used[adaptive.name], pp.tokens[adaptive.name] = [1] * 8, [25] * 8
    assert compute_matched(_cfg(adaptive_k=False), pool, [adaptive], best)["pays_from"] is None


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=12))
def test_first_copies_points_each_solution_at_its_earliest_identical_one(solutions):
    first = first_copies(solutions)
    for i, j in enumerate(first):
        assert solutions[j] == solutions[i] and j == solutions.index(solutions[i])
