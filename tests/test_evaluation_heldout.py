"""genrm_ray.evaluation.heldout: a trained verifier scored on held-out (x, y, label) pairs."""

from __future__ import annotations

import pytest

from genrm_ray.evaluation.heldout import SCORES_FILE, read_pair_scores


def test_cot_verifier_is_scored_on_heldout_pairs_by_sampling_rationales(tiny_model_dir, tmp_path):
    """A CoT run's held-out metrics come from K sampled rationales per pair (not skipped): the held-out
    direct prompts are parsed back to (question, solution) and scored as the evaluation would."""
    import random

    from genrm_ray.data import sft
    from genrm_ray.engine import make_backend
    from genrm_ray.evaluation.heldout import evaluate_verifier
    from genrm_ray.scoring import CotConfig, GenRMScorer, VerifyItem
    from genrm_ray.tasks import get_task

    task, rng = get_task("last_letter"), random.Random(0)
    items = [sft.LabelledSolution(p, c.solution, task.is_correct(c.solution, p))
             for p in task.generate("validation", 4, seed=0) for c in task.candidate_solutions(p, 3, rng)]
    held = sft.write_sft_jsonl(sft.build_verify_direct(items, balance=True, seed=0), tmp_path / "held.jsonl")
    cot = CotConfig(k=2, temperature=1.0, max_rationale_tokens=16, unfinished_p_yes=0.25, seed=3)
    metrics = evaluate_verifier(tiny_model_dir, held, "hf", cot=cot, scores_out=tmp_path / "scores.jsonl")
    records = sft.load_sft_jsonl(held, kinds=["verify_direct"])
    assert metrics["n"] == len(records) > 0 and metrics["cot_k"] == 2 and 0.0 <= metrics["unfinished_share"] <= 1.0
    # The same pairs scored directly through the library give the same mean rewards.
    expected = GenRMScorer(make_backend("hf", tiny_model_dir)).score_cot(
        [VerifyItem("last_letter", *prompts_of(r)) for r in records], cot)
    pos = [x.reward for x, r in zip(expected, records) if r.label]
    assert metrics["mean_score_correct"] == pytest.approx(sum(pos) / len(pos), abs=1e-4)
    # Within-problem AUROC, brute force: per problem, the share of (right, wrong) pairs ranked right.
    per_problem = []
    for pid in {r.problem_id for r in records}:
        right = [x.reward for x, r in zip(expected, records) if r.problem_id == pid and r.label]
        wrong = [x.reward for x, r in zip(expected, records) if r.problem_id == pid and not r.label]
        if right and wrong:
            per_problem.append(sum((a > b) + 0.5 * (a == b) for a in right for b in wrong) / (len(right) * len(wrong)))
    assert metrics["problems_with_both"] == len(per_problem) > 0
    assert metrics["within_problem_auroc"] == pytest.approx(sum(per_problem) / len(per_problem), abs=1e-3)
    # Each pair's score is kept, in the file's order, for paired comparisons between runs.
    rows = read_pair_scores(tmp_path / "scores.jsonl")
    assert [r["problem_id"] for r in rows] == [r.problem_id for r in records]
    assert [r["score"] for r in rows] == pytest.approx([x.reward for x in expected], abs=1e-4)


def test_runs_on_the_same_pairs_are_compared_pair_by_pair(tmp_path, capsys):
    """compare_runs: a run against itself differs by 0; a run whose scores follow the labels beats one
    that inverts them, with a CI above 0; runs on different pairs are refused by name."""
    import json

    from genrm_ray.evaluation.heldout import compare_runs, main

    def run(name, score_of):
        folder = tmp_path / name
        folder.mkdir()
        lines = [{"problem_id": f"p{i // 4}", "label": i % 2 == 0, "score": score_of(i), "prompt_sha1": f"h{i}"}
                 for i in range(40)]
        (folder / SCORES_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines))
        return folder

    good = run("good", lambda i: 0.9 - 0.01 * i if i % 2 == 0 else 0.1 + 0.01 * i)
    bad = run("bad", lambda i: 0.2 if i % 2 == 0 else 0.7)
    same = compare_runs(good, good)
    assert same["pairs"] == 40 and same["auroc"]["diff"] == 0.0 and not same["auroc"]["excludes_zero"]
    better = compare_runs(bad, good)
    assert better["auroc"]["diff"] == pytest.approx(1.0) and better["auroc"]["low"] > 0
    assert better["within_problem_auroc"]["problems"] == 10 and better["within_problem_auroc"]["excludes_zero"]
    other = tmp_path / "other"
    other.mkdir()
    (other / SCORES_FILE).write_text((good / SCORES_FILE).read_text().replace('"h3"', '"hx"'))
    with pytest.raises(ValueError, match="not scored on the same held-out pairs"):
        compare_runs(good, other)
    assert main([str(bad), str(good)]) == 0 and "+1.000" in capsys.readouterr().out
    (other / SCORES_FILE).write_text('{"problem_id": "p0"}\n')
    assert main([str(good), str(other)]) == 2
    assert f"{other / SCORES_FILE}:1" in capsys.readouterr().err


def prompts_of(record) -> tuple[str, str]:
    from genrm_ray import prompts

    return prompts.parse_verify_direct_prompt(record.task, record.prompt)
