"""Best-of-N expectation against brute-force enumeration, ties, bounds, self-consistency."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrm_ray.best_of_n import best_of_n_accuracy, majority_vote_accuracy, mean_ci95, pass_at_n


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
