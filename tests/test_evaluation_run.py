"""jobs/eval_best_of_n.py end to end on tiny models (vLLM pool sampling, Ray Data scoring passes), run as
a job on the session's Ray cluster; its outputs recomputed from the per-solution file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genrm_ray.stats import best_of_n_accuracy, pass_at_n
from genrm_ray.tasks import get_task

REPO = Path(__file__).resolve().parent.parent
JOB = REPO / "jobs" / "eval_best_of_n.py"
TEST_CONFIG = REPO / "tests" / "configs" / "eval_test.yaml"


@pytest.mark.integration
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
    proc = subprocess.run([
        sys.executable, str(JOB), "--config", str(TEST_CONFIG), "--problems", str(file_problems), f"models.policy={m}",
        f"models.genrm_direct={m}", f"models.genrm_cot={m}", f"models.discriminative={m}",
        f"models.extra_direct={{GenRM lambda=0: {m}}}", f"output_dir={out}",
    ], cwd=REPO, env={**os.environ, **ray_cluster.env}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "=== Best-of-N ===" in proc.stdout
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
        # The rationales are kept (K texts per solution) and read by the diagnosis, for every CoT verifier.
        assert all(len(r["rationales"][v]["texts"]) == r["rationales"][v]["k"] for r in rows for v in cot_names)
        assert sorted(s["rationale_diagnosis"]) == sorted(cot_names)
        from genrm_ray.evaluation.rationales import diagnose_scores_file

        if not name.startswith("file:"):  # read back from the files alone (generated problems only)
            assert diagnose_scores_file(out)[name] == s["rationale_diagnosis"]
        for v in cot_names:
            d = s["rationale_diagnosis"][v]
            assert d["rationales"] == sum(r["rationales"][v]["k"] for r in
                                          {(r["problem_id"], r["solution"]): r for r in rows}.values())
        # scoring.dedup: copies of a solution within a problem share its scores.
        for rs in by_problem.values():
            seen: dict[str, dict] = {}
            for r in rs:
                first = seen.setdefault(r["solution"], r)
                assert r["scores"] == first["scores"]
    # A problem in two sets (the file repeats a test problem) is scored once.
    total = len({(r["problem_id"], r["sample_index"]) for r in scores})
    distinct = len({(r["problem_id"], r["solution"]) for r in scores})
    for v in verifiers:
        assert results["scored_solutions"][v] == {"solutions": total, "scored": distinct}
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

    # reuse_pool: a second run ranks the first run's solutions (a subset: 2 test problems, 8 of 32 each)
    # with one verifier, without sampling; its pass@1 and grades come from those same solutions.
    again = tmp_path / "eval-reused"
    proc = subprocess.run([
        sys.executable, str(JOB), "--config", str(TEST_CONFIG), f"models.policy={m}", f"models.genrm_direct={m}",
        "problems.splits=[test]", "problems.n=2", "pool.n=8", "ns=[1,2,4,8]", "report_n=8", "judge=false",
        "judge_cot=false", "adaptive_k=false", f"reuse_pool={out}", f"output_dir={again}",
    ], cwd=REPO, env={**os.environ, **ray_cluster.env}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[pool] reusing the first 8 solutions of each of 2 problems" in proc.stdout
    reused = [json.loads(line) for line in (again / "scores.jsonl").read_text().splitlines()]
    first = {(r["problem_id"], r["sample_index"]): r for r in scores if r["set"] == "test"}
    assert len(reused) == 16 and {r["sample_index"] for r in reused} == set(range(8))
    for r in reused:
        orig = first[(r["problem_id"], r["sample_index"])]
        assert (r["solution"], r["correct"], r["solution_tokens"]) == (orig["solution"], orig["correct"], orig["solution_tokens"])
        assert r["scores"]["GenRM"] == pytest.approx(orig["scores"]["GenRM"], abs=1e-4)  # same model and input, other batches
    res = json.loads((again / "results.json").read_text())["sets"]["test"]
    by_problem: dict[str, list[bool]] = {}
    for r in reused:
        by_problem.setdefault(r["problem_id"], []).append(r["correct"])
    assert res["pass@1"]["mean"] == pytest.approx(sum(pass_at_n(c, 1) for c in by_problem.values()) / 2)
