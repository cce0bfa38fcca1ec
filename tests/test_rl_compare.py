"""genrm_ray.rl.compare: per-problem held-out outcomes of GRPO runs, read back and compared paired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrm_ray.rl.compare import REEVALUATED_FILE, compare_runs, fooled_rollouts, main, paired_difference, read_heldout
from genrm_ray.rl.grpo import Rollout
from genrm_ray.rl.step import HELDOUT_FILE, ROLLOUTS_FILE, ScoredRollouts, log_heldout, log_rollouts, trim_rollouts
from genrm_ray.tasks import get_task

PROBLEMS = get_task("arithmetic").generate("validation", 40, seed=0)


def write_run(run_dir: Path, outcomes: dict[int, list[float]]) -> Path:
    run_dir.mkdir(parents=True)
    for step, correct in outcomes.items():
        log_heldout(run_dir, step, PROBLEMS, correct)
    return run_dir


def test_log_heldout_round_trips_and_returns_pass_at_1(tmp_path):
    start, end = [float(i % 2) for i in range(40)], [float(i % 4 != 0) for i in range(40)]
    run = tmp_path / "run"
    run.mkdir()
    assert log_heldout(run, 0, PROBLEMS, start) == pytest.approx(0.5)
    assert log_heldout(run, 5, PROBLEMS, end) == pytest.approx(0.75)
    evals = read_heldout(run)
    assert sorted(evals) == [0, 5]
    assert evals[5] == {p.id: c for p, c in zip(PROBLEMS, end)}


def test_a_resumed_step_keeps_its_last_line(tmp_path):
    run = write_run(tmp_path / "run", {0: [0.0] * 40, 3: [0.0] * 40})
    log_heldout(run, 3, PROBLEMS, [1.0] * 40)
    assert sum(read_heldout(run)[3].values()) == 40


def test_gain_is_paired_over_problems(tmp_path):
    # 10 problems flip wrong -> right, none right -> wrong: gain 0.25 with a CI that excludes 0.
    start = [0.0] * 20 + [1.0] * 20
    end = [1.0] * 10 + [0.0] * 10 + [1.0] * 20
    a = read_heldout(write_run(tmp_path / "a", {0: start, 4: end}))
    b = read_heldout(write_run(tmp_path / "b", {0: start, 6: start}))
    out = compare_runs({"oracle": a, "b": b}, reference="oracle")
    assert out["oracle"]["gain"]["diff"] == pytest.approx(0.25)
    assert out["oracle"]["gain"]["low"] > 0
    assert out["oracle"]["last_step"] == 4 and out["oracle"]["pass_at_1_end"] == pytest.approx(0.75)
    assert out["b"]["gain"] == {"diff": 0.0, "low": 0.0, "high": 0.0, "n": 40}
    assert out["b"]["vs_oracle"]["diff"] == pytest.approx(-0.25) and out["b"]["vs_oracle"]["high"] < 0
    assert out["b"]["share_of_oracle_gain"] == 0.0 and out["oracle"]["share_of_oracle_gain"] == 1.0
    assert "vs_oracle" not in out["oracle"]


def test_no_share_of_an_oracle_gain_that_is_not_a_gain(tmp_path):
    start, worse = [1.0] * 40, [0.0] * 4 + [1.0] * 36
    oracle = read_heldout(write_run(tmp_path / "oracle", {0: start, 3: worse}))
    other = read_heldout(write_run(tmp_path / "other", {0: start, 3: worse}))
    out = compare_runs({"oracle": oracle, "other": other})
    assert out["oracle"]["gain"]["diff"] == pytest.approx(-0.1)
    assert out["oracle"]["share_of_oracle_gain"] is None and out["other"]["share_of_oracle_gain"] is None


def test_different_problems_are_not_compared():
    with pytest.raises(ValueError, match="not the same held-out problems: 1 only in one"):
        paired_difference({"p1": 1.0, "p2": 0.0}, {"p1": 1.0})


def test_a_run_without_step_0_or_an_unknown_reference_is_refused(tmp_path):
    late = read_heldout(write_run(tmp_path / "late", {5: [1.0] * 40}))
    with pytest.raises(ValueError, match="no evaluation at step 0"):
        compare_runs({"late": late})
    with pytest.raises(ValueError, match="reference 'x' is not one of the runs"):
        compare_runs({"late": late}, reference="x")


def test_a_bad_line_names_file_and_line(tmp_path):
    run = write_run(tmp_path / "run", {0: [1.0] * 40})
    with open(run / HELDOUT_FILE, "a") as f:
        f.write(json.dumps({"step": 2, "problem_ids": ["a", "b"], "correct": [1.0]}) + "\n")
    with pytest.raises(ValueError, match=r"heldout.jsonl:2: .*2 problem ids but 1 outcomes"):
        read_heldout(run)


def log_step(run_dir: Path, step: int, texts: list[str], rewards: list[float], graded: list[bool]) -> None:
    """One step of two problems, half the texts each (a group per problem)."""
    half = len(texts) // 2
    groups = [[Rollout(t, [1], [1], True) for t in texts[:half]], [Rollout(t, [1], [1], True) for t in texts[half:]]]
    log_rollouts(run_dir, step, PROBLEMS[:2], ScoredRollouts(groups, rewards, [{}] * len(texts), 0.0, 0.0), graded)


def test_fooled_rollouts_are_the_wrong_ones_a_reward_paid_for(tmp_path):
    assert fooled_rollouts(tmp_path) == {}  # a run made before rollouts were logged
    log_step(tmp_path, 1, ["a", "b", "c", "d"], [0.9, 0.2, 0.8, 0.1], [True, False, False, False])
    log_step(tmp_path, 2, ["junk", "junk", "x", "right"], [0.95, 0.95, 0.3, 0.9], [False, False, False, True])
    rows = [json.loads(line) for line in (tmp_path / ROLLOUTS_FILE).read_text().splitlines()]
    assert [(r["step"], r["problem_id"], r["response"], r["correct"]) for r in rows[:2]] == \
        [(1, PROBLEMS[0].id, "a", True), (1, PROBLEMS[0].id, "b", False)]
    fooled = fooled_rollouts(tmp_path, n=3)
    # Step 1: one of three wrong rollouts paid above 0.5; step 2: two of three. Right ones never count.
    assert fooled["wrong_paid_share_per_step"] == [[1, 0.3333], [2, 0.6667]]
    assert [(e["response"], e["reward"]) for e in fooled["examples"]] == [("junk", 0.95), ("c", 0.8)]
    # A run resumed from step 1's checkpoint drops the later steps, then logs them again.
    trim_rollouts(tmp_path, 1)
    log_step(tmp_path, 2, ["y", "z", "w", "v"], [0.1, 0.1, 0.1, 0.1], [False] * 4)
    assert fooled_rollouts(tmp_path)["wrong_paid_share_per_step"] == [[1, 0.3333], [2, 0.0]]
    with open(tmp_path / ROLLOUTS_FILE, "a") as f:
        f.write('{"step": 3}\n')
    with pytest.raises(ValueError, match=r"rollouts.jsonl:9: not a rollout line"):
        fooled_rollouts(tmp_path)


def test_a_run_without_outcomes_points_at_the_re_evaluation(tmp_path):
    with pytest.raises(FileNotFoundError, match="--evaluate-missing"):
        read_heldout(tmp_path)


def write_metrics(run_dir: Path, aurocs: list[float], refreshed: bool = False) -> None:
    rows = [{"step": 0, "pass_at_1": 0.0, "elapsed_s": 0.0}]
    for step, a in enumerate(aurocs, 1):
        row = {"step": step, "reward_mean": 0.5, "reward_auroc": a, "kl": 0.01 * step, "elapsed_s": 60.0 * step}
        if refreshed:
            row["refresh_skipped"] = float(step % 2)
        rows.append(row)
    rows[-1]["pass_at_1"] = 1.0
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_writes_the_comparison(tmp_path, capsys):
    write_metrics(write_run(tmp_path / "a", {0: [0.0] * 40, 2: [1.0] * 40}), [1.0, 1.0])
    write_metrics(write_run(tmp_path / "b", {0: [0.0] * 40, 2: [0.0] * 20 + [1.0] * 20}), [0.4, 0.8, -1.0, 0.6], refreshed=True)
    (tmp_path / "a" / REEVALUATED_FILE).write_text(json.dumps({"step_0": {"logged": 0.0, "re_evaluated": 0.0}}))
    out = tmp_path / "cmp.json"
    assert main([f"oracle={tmp_path / 'a'}", str(tmp_path / "b"), "--reference", "oracle", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["runs"] == {"oracle": str(tmp_path / "a"), "b": str(tmp_path / "b")}
    assert result["comparison"]["b"]["share_of_oracle_gain"] == 0.5
    assert result["re_evaluated"] == {"oracle": {"step_0": {"logged": 0.0, "re_evaluated": 0.0}}}
    assert result["command"].startswith("python -m genrm_ray.rl.compare oracle=")
    stats = result["run_stats"]["b"]
    # -1 marks a step whose rollouts held one class (no AUROC): left out of the mean and range.
    assert stats["reward_auroc_mean"] == 0.6 and stats["reward_auroc_range"] == [0.4, 0.8]
    assert (stats["steps"], stats["minutes"], stats["s_per_step"], stats["kl_last"]) == (4, 4.0, 60.0, 0.04)
    assert stats["refreshes"] == 2 and result["run_stats"]["oracle"]["refreshes"] == 0
    with pytest.raises(SystemExit, match="compare: .*no per-problem held-out outcomes"):
        main([str(tmp_path / "missing")])
