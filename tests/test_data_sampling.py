"""genrm_ray.data.sampling: policy sampling as a Ray Data pipeline over vLLM engine actors."""

from __future__ import annotations

import warnings

import pytest

from genrm_ray.data.sampling import Sample, SamplingConfig, grade, sample_solutions
from genrm_ray.tasks import get_task


@pytest.mark.integration
def test_ray_data_pool_samples_n_solutions_per_problem(ray_cluster, tiny_model_dir):
    task = get_task("last_letter")
    problems = task.generate("train", 5, seed=0)
    # batch_size 2 over 5 problems: three map_batches calls through one vLLM engine actor.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = sample_solutions(problems, tiny_model_dir, SamplingConfig(
            n=3, temperature=1.0, max_tokens=12, seed=0, concurrency=1, batch_size=2, num_cpus=1))
    # max_restarts=0 reaches Ray Data through its deprecated **ray_remote_args: no warning on the console.
    assert not [w for w in caught if "ray_remote_args" in str(w.message)], [str(w.message) for w in caught]
    assert len(samples) == 15
    assert all(isinstance(s, Sample) for s in samples)
    by_problem: dict[str, list[int]] = {}
    for s in samples:
        by_problem.setdefault(s.problem_id, []).append(s.sample_index)
        assert s.finish_reason in ("stop", "length")
    assert by_problem == {p.id: [0, 1, 2] for p in problems}
    # A random-init model rambles: some samples must hit max_tokens, and sampling at temperature 1
    # must not return one string for all three samples of every problem.
    assert any(s.finish_reason == "length" for s in samples)
    assert any(len({s.solution for s in samples if s.problem_id == p.id}) > 1 for p in problems)

    labelled = grade(problems, samples)
    assert [x.solution for x in labelled] == [s.solution for s in samples]
    for x in labelled:
        assert x.correct == task.is_correct(x.solution, x.problem)


def test_sampling_grades_reference_solutions_correct():
    # grade() labels with the task's is_correct: a reference solution is correct, an empty one not.
    task = get_task("last_letter")
    problems = task.generate("test", 2, seed=1)
    samples = [Sample(p.id, 0, task.reference_solution(p), "stop") for p in problems]
    samples += [Sample(p.id, 1, "", "length") for p in problems]
    labels = [x.correct for x in grade(problems, samples)]
    assert labels == [True, True, False, False]


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "sampling.n must be >= 1"),
    (dict(n=1, concurrency=0), "sampling.concurrency must be >= 1"),
    (dict(top_p=0.0), r"sampling.top_p in \(0, 1\]"),
])
def test_bad_sampling_arguments_fail_before_ray(kwargs, message, tmp_path):
    problems = get_task("last_letter").generate("train", 1, seed=0)
    with pytest.raises(ValueError, match=message):
        sample_solutions(problems, tmp_path, SamplingConfig(**kwargs))


def test_no_problems_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no problems"):
        sample_solutions([], tmp_path, SamplingConfig(n=1))


def test_truncation_is_measured_and_warned_about_past_five_percent():
    from genrm_ray.data.sampling import Sample, truncated_share, truncation_warning

    samples = [Sample("p", i, "s", "length" if i < 3 else "stop") for i in range(20)]
    assert truncated_share(samples) == 0.15
    assert truncated_share([]) == 0.0
    message = truncation_warning(0.15, "pool.max_tokens", 160)
    assert message is not None and "15%" in message and "pool.max_tokens=160" in message
    assert truncation_warning(0.05, "pool.max_tokens", 160) is None
