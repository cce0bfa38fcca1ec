"""genrm_ray.evaluation.pools.load_pools (reuse_pool): an earlier evaluation's scores.jsonl read back as
pools, a subset of its problems and solutions, regraded by the task, with errors naming file and line."""

import json

import pytest

from genrm_ray.evaluation.config import EvalConfig, EvalInputError, check_config
from genrm_ray.evaluation.pools import PoolProblem, load_pools
from genrm_ray.evaluation.report import write_scores
from genrm_ray.tasks import get_task

TASK = get_task("arithmetic")


def written_pool(tmp_path, n_problems=4, m=6):
    """A pool as an evaluation writes it: each problem's reference solution at even indices, a wrong one at odd."""
    problems = TASK.generate("test", n_problems, seed=0)
    pool = []
    for prob in problems:
        right = TASK.reference_solution(prob)
        wrong = right.rsplit(" ", 1)[0] + " 123456789"
        sols = [right if i % 2 == 0 else wrong for i in range(m)]
        pool.append(PoolProblem(prob, sols, [TASK.is_correct(s, prob) for s in sols],
                                [TASK.extract_answer(s) for s in sols], [i == 1 for i in range(m)],
                                [10 + i for i in range(m)], scores={"GenRM": [0.5] * m}))
    path = tmp_path / "scores.jsonl"
    write_scores({"test": pool}, path)
    return problems, pool, path


def test_a_subset_of_problems_and_solutions_comes_back_regraded(tmp_path):
    problems, pool, path = written_pool(tmp_path)
    cfg = EvalConfig()
    cfg.pool.n = 4
    sets = {"test": problems[:3]}
    got = load_pools(cfg, sets, tmp_path, log=lambda *_: None)  # the output dir works as well as the file
    assert [pp.problem.id for pp in got["test"]] == [p.id for p in problems[:3]]
    for pp, orig in zip(got["test"], pool):
        assert pp.solutions == orig.solutions[:4]
        assert pp.correct == [True, False, True, False] == orig.correct[:4]
        assert pp.answers == orig.answers[:4]
        assert pp.truncated == [False, True, False, False]
        assert pp.solution_tokens == [10, 11, 12, 13]
        assert pp.scores == {}  # every verifier of the new config scores again


def test_a_problem_in_two_sets_is_one_object(tmp_path):
    problems, _, path = written_pool(tmp_path)
    cfg = EvalConfig()
    cfg.pool.n = 6
    got = load_pools(cfg, {"a": problems[:2], "b": problems[1:3]}, path, log=lambda *_: None)
    assert got["a"][1] is got["b"][0]


def test_errors_name_what_is_wrong(tmp_path):
    problems, _, path = written_pool(tmp_path, n_problems=2, m=4)
    cfg = EvalConfig()
    cfg.pool.n = 8
    with pytest.raises(EvalInputError, match="fewer than pool.n=8"):
        load_pools(cfg, {"test": problems}, path)
    cfg.pool.n = 4
    other = TASK.generate("validation", 1, seed=0)
    with pytest.raises(EvalInputError, match=f"problem {other[0].id} of set 'validation' is not in"):
        load_pools(cfg, {"validation": other}, path)
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    del row["solution"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:2] + [json.dumps(row)] + lines[3:]) + "\n")
    with pytest.raises(EvalInputError, match=r"bad.jsonl:3: not a scores.jsonl row \(KeyError"):
        load_pools(cfg, {"test": problems}, bad)


def test_config_check_rejects_a_missing_pool(tiny_model_dir, tmp_path):
    cfg = EvalConfig()
    cfg.models.policy = str(tiny_model_dir)
    cfg.problems.task = "arithmetic"
    cfg.problems.splits = ["test"]
    cfg.judge_cot = False
    cfg.reuse_pool = str(tmp_path / "nowhere")
    with pytest.raises(EvalInputError, match="reuse_pool: .*nowhere is neither a scores.jsonl"):
        check_config(cfg)
