"""Best-of-N evaluation (genrm_ray.evaluation, jobs/eval_best_of_n.py): the metrics on hand-built pools,
config checks, and the job end to end on tiny models (vLLM pool sampling, Ray Data scoring passes)."""

from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path

import pytest

from genrm_ray.best_of_n import best_of_n_accuracy, pass_at_n
from genrm_ray.config import load_config
from genrm_ray.evaluation import (
    EvalConfig, EvalInputError, PoolProblem, VerifierSpec, check_config, markdown_report, pool_metrics,
    resolve_model_dir, resolve_policy_dir, verifier_specs,
)
from genrm_ray.tasks import get_task

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "jobs"))
import eval_best_of_n  # noqa: E402

TEST_CONFIG = REPO / "configs" / "eval_test.yaml"
from tests.fixtures.data import GSM8K_HEAD  # noqa: E402


# -- metrics on hand-built pools ----------------------------------------------------------------------


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
    cfg.pool.size = 8
    cfg.ns = [1, 2, 4, 8]
    cfg.report_n = 4
    cfg.cot.k = 4
    cfg.cot.k_curve = [1, 2, 4]
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
        subsets = list(combinations(range(6), n))
        brute = 0.0
        for sub in subsets:
            top = max(scores[i] for i in sub)
            winners = [i for i in sub if scores[i] == top]
            brute += sum(correct[i] for i in winners) / len(winners)
        assert best_of_n_accuracy(scores, correct, n) == pytest.approx(brute / len(subsets))


# -- config checks --------------------------------------------------------------------------------------


def test_config_checks_name_the_key(tiny_model_dir, tmp_path):
    def cfg(*overrides):
        return load_config(EvalConfig, TEST_CONFIG, [f"models.policy={tiny_model_dir}", *overrides])

    check_config(cfg())
    with pytest.raises(EvalInputError, match="pool.size"):
        check_config(cfg("ns=[1, 64]"))
    with pytest.raises(EvalInputError, match="report_n"):
        check_config(cfg("report_n=3"))
    with pytest.raises(EvalInputError, match="no split 'validaton'"):
        check_config(cfg("problems.splits=[validaton]"))
    with pytest.raises(EvalInputError, match="models.genrm_cot"):
        check_config(cfg(f"models.genrm_cot={tmp_path}"))
    with pytest.raises(EvalInputError, match="models.policy is required"):
        check_config(load_config(EvalConfig, TEST_CONFIG))
    with pytest.raises(EvalInputError, match="cot.k_curve"):
        check_config(cfg("cot.k_curve=[8]"))
    with pytest.raises(EvalInputError, match="cot.temperature=0.0: must be > 0"):
        check_config(cfg("cot.temperature=0.0"))
    with pytest.raises(EvalInputError, match="unique"):
        verifier_specs(cfg(f"models.genrm_direct={tiny_model_dir}", f"models.extra_direct={{GenRM: {tiny_model_dir}}}"))


def test_run_dirs_resolve_to_their_hf_export(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    (run / "genrm").mkdir(parents=True)
    (run / "genrm" / "hf_model").symlink_to(tiny_model_dir)
    assert resolve_model_dir(str(run), "x") == run / "genrm" / "hf_model"
    assert resolve_model_dir(str(run / "genrm"), "x") == run / "genrm" / "hf_model"
    assert resolve_model_dir(str(tiny_model_dir), "x") == Path(tiny_model_dir)
    with pytest.raises(EvalInputError, match="names no policy"):
        resolve_policy_dir(str(run))  # never the run's GenRM export
    # A GenRM run dir given as the policy means the policy that run was trained from.
    (run / "summary.json").write_text(json.dumps({"data": {"policy": str(tiny_model_dir)}}))
    assert resolve_policy_dir(str(run)) == Path(tiny_model_dir)
    with pytest.raises(EvalInputError, match="neither an HF model dir"):
        resolve_policy_dir(str(tmp_path))


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("eval_*.yaml")), ids=lambda p: p.name)
def test_every_eval_config_loads_and_is_consistent(path, tiny_model_dir):
    cfg = load_config(EvalConfig, path, [f"models.policy={tiny_model_dir}"])
    # Model dirs and problem files name paths on the machines the config is for: swap in local ones.
    cfg.models = type(cfg.models)(policy=str(tiny_model_dir))
    cfg.problems.files = [GSM8K_HEAD for _ in cfg.problems.files]
    check_config(cfg)
    assert cfg.pool.size >= 32 and max(cfg.ns) <= cfg.pool.size


def test_job_rejects_a_bad_problem_file_before_starting_anything(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Take the last letters of the words in \\"ab cd\\" and concatenate them.", "answer": "bd"}\n'
                   '{"question": "q"}\n')
    rc = eval_best_of_n.main(["--config", str(TEST_CONFIG), "--problems", str(bad), f"models.policy={tiny_model_dir}"])
    assert rc == 2 and f"{bad}:2" in capsys.readouterr().err
    rc = eval_best_of_n.main(["--config", str(TEST_CONFIG), "--problems", str(tmp_path / "missing.jsonl"),
                              f"models.policy={tiny_model_dir}"])
    assert rc == 2 and "missing.jsonl" in capsys.readouterr().err


# -- the job end to end ------------------------------------------------------------------------------------


def test_eval_job_end_to_end(ray_cluster, tiny_model_dir, tmp_path):
    """Every verifier and baseline over tiny models on test, OOD and a problem file: outputs and their
    internal consistency. (An untrained tiny policy rarely solves anything, so Best-of-N values are
    near 0; the exact arithmetic on non-trivial pools is checked by the tests above.)"""
    task = get_task("last_letter")
    file_problems = tmp_path / "problems.jsonl"
    with file_problems.open("w") as f:
        # One new problem and one that the test split also holds (sampled and scored once, in both sets).
        for p in task.generate("validation", 1, seed=5) + task.generate("test", 1, seed=0):
            f.write(json.dumps({"question": p.question, "answer": p.answer}) + "\n")
    out = tmp_path / "eval"
    m = str(tiny_model_dir)
    rc = eval_best_of_n.main([
        "--config", str(TEST_CONFIG), "--problems", str(file_problems), f"models.policy={m}",
        f"models.genrm_direct={m}", f"models.genrm_cot={m}", f"models.discriminative={m}",
        f"models.extra_direct={{GenRM lambda=0: {m}}}", f"output_dir={out}",
    ])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    verifiers = ["GenRM-CoT", "GenRM-CoT (adaptive K)", "GenRM", "GenRM lambda=0", "Discriminative RM",
                 "LLM-as-a-Judge", "LLM-as-a-Judge (CoT)"]
    assert [v["name"] for v in results["verifiers"]] == verifiers
    assert list(results["sets"]) == ["test", "ood", "file:problems.jsonl"]
    sizes = {"test": 3, "ood": 2, "file:problems.jsonl": 2}

    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    table = (out / "results.md").read_text()
    for name, s in results["sets"].items():
        assert s["n_problems"] == sizes[name] and s["pool_size"] == 32
        assert set(s["best_of_n"]) == {"Self-consistency", *verifiers}
        oracle = [s["pass@n"][str(n)]["mean"] for n in results["ns"]]
        assert oracle == sorted(oracle)  # pass@N never decreases with N
        assert s["pass@1"]["mean"] <= s["pass@n"]["32"]["mean"]
        for v in verifiers:
            curve = s["best_of_n"][v]
            assert curve["1"]["mean"] == pytest.approx(s["pass@1"]["mean"], abs=1e-12)
            for n in results["ns"]:
                assert 0.0 <= curve[str(n)]["mean"] <= s["pass@n"][str(n)]["mean"] + 1e-9  # no verifier beats the oracle
        assert set(s["cot_k_curve"]) == {"1", "2", "4"}
        a = s["adaptive_k"]["adaptive"]
        assert 2.0 <= a["mean_k"] <= 4.0 and a["rationales"] == round(a["mean_k"] * 32 * sizes[name])
        assert f"### {name}:" in table
        # Recompute the numbers from the per-solution file: grades and Best-of-N agree with results.json.
        rows = [r for r in scores if r["set"] == name]
        assert len(rows) == 32 * sizes[name]
        by_problem: dict[str, list[dict]] = {}
        for r in rows:
            by_problem.setdefault(r["problem_id"], []).append(r)
        for v in verifiers:
            acc = [best_of_n_accuracy([r["scores"][v] for r in rs], [r["correct"] for r in rs], 16) for rs in by_problem.values()]
            assert sum(acc) / len(acc) == pytest.approx(s["best_of_n"][v]["16"]["mean"])
        p1 = [pass_at_n([r["correct"] for r in rs], 1) for rs in by_problem.values()]
        assert sum(p1) / len(p1) == pytest.approx(s["pass@1"]["mean"])
        # Cut solutions and rationales are counted, not hidden: the shares recompute from the rows.
        assert s["truncated_share"] == pytest.approx(sum(r["truncated"] for r in rows) / len(rows))
        cot_names = [v for v in verifiers if "CoT" in v]
        assert sorted(s["cot_unfinished_share"]) == sorted(cot_names)
        for v in cot_names:
            cut = sum(r["rationales"][v]["unfinished"] for r in rows)
            assert s["cot_unfinished_share"][v] == pytest.approx(cut / sum(r["rationales"][v]["k"] for r in rows))
        assert all(set(r["rationales"]) == set(cot_names) for r in rows)
    problems = {p.id: p for p in task.generate("test", 3, seed=0)}
    for r in scores:
        if r["set"] == "test":
            assert r["correct"] == task.is_correct(r["solution"], problems[r["problem_id"]])
            assert all(0.0 <= x <= 1.0 for x in r["scores"].values())
    for v in verifiers:
        assert f"| {v} |" in table
    for png in ["best_of_n_test.png", "best_of_n_ood.png", "cot_k_test.png", "best_of_n_file_problems.jsonl.png"]:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
