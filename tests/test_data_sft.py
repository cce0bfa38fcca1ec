"""Dataset builders (D_verify, D_cot, D_correct) and the SFT JSONL schema checks."""

import json
import random

import pytest

from genrm_ray import prompts
from genrm_ray.data.sft import (
    LabelledSolution,
    SFTDataError,
    build_correct,
    build_verify_cot,
    build_verify_direct,
    load_sft_jsonl,
    write_sft_jsonl,
)
from genrm_ray.tasks import get_task


@pytest.fixture(scope="module")
def labelled():
    task = get_task("last_letter")
    rng = random.Random(0)
    items = []
    for p in task.generate("train", 60, seed=1):
        for c in task.candidate_solutions(p, 4, rng):
            items.append(LabelledSolution(p, c.solution, c.correct))
    assert any(x.correct for x in items) and any(not x.correct for x in items)
    return items


def test_direct_is_balanced_and_consistent(labelled):
    records = build_verify_direct(labelled, balance=True, seed=3)
    yes = [r for r in records if r.label]
    assert len(yes) == len(records) - len(yes) > 0
    for r in records:
        assert r.prompt.endswith(prompts.DIRECT_QUESTION)
        assert r.target == (prompts.YES if r.label else prompts.NO)
    unbalanced = build_verify_direct(labelled, balance=False)
    assert len(unbalanced) == len(labelled)


def test_per_problem_balance_gives_every_problem_as_many_yes_as_no():
    """An easy problem with 3 right and 1 wrong, a hard one with 1 right and 3 wrong, one with only wrong
    solutions: global balance keeps the problem-level imbalance, per-problem balance removes it."""
    task = get_task("arithmetic")
    easy, hard, unsolved = task.generate("train", 3, seed=0)
    items = [LabelledSolution(easy, f"r{i}", True) for i in range(3)] + [LabelledSolution(easy, "w0", False)]
    items += [LabelledSolution(hard, "r0", True)] + [LabelledSolution(hard, f"w{i}", False) for i in range(3)]
    items += [LabelledSolution(unsolved, f"w{i}", False) for i in range(2)]
    for seed in range(5):
        records = build_verify_direct(items, balance=True, seed=seed, per_problem=True)
        counts = {pid: [r.label for r in records if r.problem_id == pid] for pid in {r.problem_id for r in records}}
        assert counts.keys() == {easy.id, hard.id}  # a problem without a right solution contributes nothing
        assert all(labels.count(True) == labels.count(False) == 1 for labels in counts.values())
    glob = build_verify_direct(items, balance=True, seed=0)
    assert sum(r.label for r in glob) == len(glob) - sum(r.label for r in glob) == 4
    assert sum(r.label for r in glob if r.problem_id == easy.id) == 3  # every right solution of the easy problem


def test_cot_keeps_only_rationales_whose_verdict_matches(labelled):
    task = get_task("last_letter")

    def flaky_teacher(problem, solution):
        # Every third rationale claims the opposite verdict, every fifth never reaches one.
        flaky_teacher.calls += 1
        r = task.verification_rationale(problem, solution)
        if flaky_teacher.calls % 5 == 0:
            return r.split(prompts.DIRECT_QUESTION)[0]
        if flaky_teacher.calls % 3 == 0:
            head, verdict = prompts.split_verdict(r)
            return head + prompts.DIRECT_QUESTION + prompts.verdict_text(not verdict)
        return r

    flaky_teacher.calls = 0
    records, stats = build_verify_cot(labelled, flaky_teacher, balance=False)
    assert stats.offered == len(labelled)
    assert stats.rejected_no_verdict == len(labelled) // 5
    assert stats.rejected_wrong_verdict > 0
    assert stats.kept == len(records) == stats.offered - stats.rejected_no_verdict - stats.rejected_wrong_verdict
    for r in records:
        assert prompts.split_verdict(r.target)[1] == r.label
        assert r.prompt.endswith(prompts.COT_TRIGGER)

    balanced, _ = build_verify_cot(labelled, task.verification_rationale, balance=True)
    assert sum(r.label for r in balanced) * 2 == len(balanced)


def test_correct_holds_only_correct_solutions(labelled):
    records = build_correct(labelled)
    assert len(records) == sum(x.correct for x in labelled)
    task = get_task("last_letter")
    by_id = {x.problem.id: x.problem for x in labelled}
    for r in records:
        assert r.label is None
        assert task.is_correct(r.target, by_id[r.problem_id])
        assert r.prompt == prompts.solve_prompt("last_letter", by_id[r.problem_id].question)


def test_round_trip(tmp_path, labelled):
    records = build_verify_direct(labelled) + build_correct(labelled)
    path = write_sft_jsonl(records, tmp_path / "d.jsonl")
    assert load_sft_jsonl(path) == records
    with pytest.raises(SFTDataError, match=r"d.jsonl:1: kind 'verify_direct' not allowed"):
        load_sft_jsonl(path, kinds=["correct"])


GOOD = {"kind": "verify_direct", "task": "last_letter", "problem_id": "p1", "prompt": "x", "target": " Yes", "label": True}


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "prompt"}), "missing field 'prompt'"),
        (json.dumps({**GOOD, "target": 3}), "field 'target' must be a string"),
        (json.dumps({**GOOD, "kind": "verify"}), "field 'kind' is 'verify'"),
        (json.dumps({**GOOD, "label": "yes"}), "field 'label' must be true, false or null"),
        (json.dumps({**GOOD, "label": False}), "disagrees with label False"),
        (json.dumps({**GOOD, "target": " Maybe"}), "verify_direct target must be"),
        (json.dumps({**GOOD, "kind": "verify_cot", "target": "looks fine"}), "verify_cot target must end with"),
        (json.dumps({**GOOD, "prompt": "  "}), "field 'prompt' is empty"),
        (json.dumps({**GOOD, "kind": "correct", "label": False}), "label null or true"),
        (json.dumps({**GOOD, "extra": 1}), r"unknown field\(s\) \['extra'\]"),
    ],
)
def test_bad_record_names_file_line_and_reason(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + line + "\n")
    with pytest.raises(SFTDataError, match=rf"bad.jsonl:3: .*{reason}"):
        load_sft_jsonl(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(SFTDataError, match="no such file"):
        load_sft_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SFTDataError, match="no records"):
        load_sft_jsonl(tmp_path / "empty.jsonl")


def test_writer_refuses_inconsistent_records(tmp_path, labelled):
    bad = build_verify_direct(labelled)[0]
    from dataclasses import replace

    with pytest.raises(SFTDataError, match="disagrees"):
        write_sft_jsonl([replace(bad, label=not bad.label)], tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
