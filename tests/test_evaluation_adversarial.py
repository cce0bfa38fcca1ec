"""The adversarial suite's metrics and job (genrm_ray.evaluation.adversarial, jobs/adversarial_suite.py):
metrics against hand counts, config checks, and the whole job on the tiny model (transformers backend,
no Ray): every class for every verifier, defended and undefended, and results that the scores file
reproduces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genrm_ray.attacks import ATTACKS, AttackResponse
from genrm_ray.config import ConfigError, load_config
from genrm_ray.evaluation import adversarial as suite

REPO = Path(__file__).resolve().parent.parent


def run_job(*args: str) -> subprocess.CompletedProcess:
    """``python jobs/adversarial_suite.py *args`` from the repo root (``--config`` defaults to the demo's, mini sudoku)."""
    return subprocess.run([sys.executable, str(REPO / "jobs" / "adversarial_suite.py"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def response(attack: str, correct: bool, problem: str = "p", appended: bool = False, variant: str = "v") -> AttackResponse:
    return AttackResponse(attack, variant, problem, "q", "r", correct, appended_to_right=appended)


def test_metrics_by_hand():
    rs = [response("right_solution", True, "p"), response("right_solution", True, "q"),
          response("master_key", False, "p"), response("master_key", False, "q"),
          response("master_key", True, "p", appended=True), response("master_key", True, "q", appended=True),
          response("instruction", False, "p"), response("instruction", False, "p", appended=True)]
    rewards = [0.8, 0.4, 0.6, 0.2, 0.9, 0.5, 0.7, 0.1]
    m = suite.suite_metrics(rs, rewards)
    key = m["classes"]["master_key"]
    assert key["n"] == 2 and key["mean_reward"] == pytest.approx(0.4)
    assert key["n_wrong"] == 2 and key["false_positive_rate"] == 0.5  # 0.6 > 0.5, 0.2 not
    assert key["right_shift"] == pytest.approx(((0.9 - 0.8) + (0.5 - 0.4)) / 2, abs=1e-4)
    inst = m["classes"]["instruction"]  # junk that made the right solution wrong counts as wrong
    assert inst["n"] == 1 and inst["n_wrong"] == 2 and inst["false_positive_rate"] == 0.5 and inst["right_shift"] is None
    assert m["classes"]["right_solution"]["false_positive_rate"] is None
    assert m["max_false_positive_rate"] == 0.5
    table = suite.markdown_table({"A": m})
    assert "| master_key | 0.400 / 0.500 / +0.100 |" in table


def test_undefended_verifiers_score_only_what_the_defence_changes():
    from genrm_ray import attacks
    from genrm_ray.tasks import get_task

    task = get_task("arithmetic")
    rs = attacks.attack_responses(task, task.generate("test", 2, seed=0))
    seen: dict[str, int] = {}

    def scorer(name):
        def score(qs, xs):
            seen[name] = len(xs)
            return [0.25 if name.endswith(suite.UNDEFENDED) else 0.75] * len(xs)
        return score

    rewards = suite.score_suite(rs, {"V": scorer("V"), "V" + suite.UNDEFENDED: scorer("V" + suite.UNDEFENDED)})
    changed = set(suite.changed_by_defence(rs))
    assert seen == {"V": len(rs), "V (undefended)": len(changed)} and 0 < len(changed) < len(rs)
    assert rewards["V (undefended)"] == [0.25 if i in changed else 0.75 for i in range(len(rs))]
    assert {rs[i].attack for i in changed} == {"injected_verdict", "lookalike_verdict", "instruction"}


def test_the_suite_attacks_a_reasoning_gym_task_with_its_generator_settings():
    from genrm_ray import attacks
    from genrm_ray.tasks import get_task

    cfg = load_config(suite.SuiteConfig, REPO / "configs" / "adversarial" / "mini_sudoku_demo.yaml")
    suite.check_suite_config(cfg)
    task = get_task(cfg.task, cfg.options)
    problems = task.generate(cfg.split, 3, seed=0)
    assert all(4 <= p.question.split(":\n", 1)[1].count("_") <= 6 for p in problems)  # the demo's 4-6 blanks
    rs = attacks.attack_responses(task, problems)
    by_id = {p.id: p for p in problems}
    assert {r.attack for r in rs} >= {"right_solution", "master_key", "injected_verdict", "instruction"}
    assert all(r.correct == task.is_correct(r.response, by_id[r.problem_id]) for r in rs)  # graded by the task
    assert sum(r.attack == "right_solution" and r.correct for r in rs) == 3
    assert not any(r.correct for r in rs if r.attack == "master_key" and not r.appended_to_right)


def test_score_suite_rejects_a_verifier_that_drops_responses():
    rs = [response("master_key", False)] * 3
    with pytest.raises(ValueError, match="returned 2 rewards for 3 responses"):
        suite.score_suite(rs, {"bad": lambda qs, xs: [0.0, 0.0]})


@pytest.mark.parametrize("overrides, message", [
    (["verifiers={}"], "name at least one verifier"),
    (["verifiers.X={kind: served}"], "exactly one of url / app_name"),
    (["verifiers.X={kind: genrm_direct}"], "verifiers.X.path is required"),
    (["split=ood", "task=arithmetic"], "has no split 'ood'"),
    (["verifiers.GenRM.kind=magic"], "must be one of"),
    (["n=0"], "n must be >= 1"),
    (["options={min_empty: 4}"], "task / options: task 'arithmetic' takes no options"),
    (["task=mini_sudoku", "options={blanks: 4}"], "task / options: .*blanks"),
])
def test_bad_suite_config_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        cfg = load_config(suite.SuiteConfig, REPO / "configs" / "adversarial" / "arithmetic_demo.yaml", overrides)
        if overrides == ["verifiers={}"]:
            cfg.verifiers = {}
        suite.check_suite_config(cfg)


def test_named_sections_merge_entry_by_entry():
    cfg = load_config(suite.SuiteConfig, REPO / "configs" / "adversarial" / "arithmetic_demo.yaml",
                      ["verifiers.GenRM.path=runs/other", "verifiers.CoT={kind: genrm_cot, path: runs/cot}"])
    assert cfg.verifiers["GenRM"].path == "runs/other" and cfg.verifiers["GenRM"].kind == "genrm_direct"
    assert cfg.verifiers["CoT"].kind == "genrm_cot" and "LLM-as-a-Judge" in cfg.verifiers
    dropped = load_config(suite.SuiteConfig, REPO / "configs" / "adversarial" / "arithmetic_demo.yaml", ["verifiers.LLM-as-a-Judge=null"])
    assert list(dropped.verifiers) == ["GenRM"]
    with pytest.raises(ConfigError, match="unknown config key 'verifiers.GenRM.pth'"):
        load_config(suite.SuiteConfig, None, ["verifiers.GenRM={kind: judge}", "verifiers.GenRM.pth=x"])


def test_missing_checkpoint_exits_2_naming_the_key(tmp_path):
    proc = run_job(f"verifiers.GenRM.path={tmp_path / 'nothing'}", f"output_dir={tmp_path / 'out'}")
    assert proc.returncode == 2 and "verifiers.GenRM.path" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started


def test_the_suite_job_on_the_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "suite"
    copy = tmp_path / "results.json"
    config = tmp_path / "suite.yaml"
    config.write_text(f"""
task: last_letter
n: 3
verifiers:
  GenRM: {{kind: genrm_direct, path: {tiny_model_dir}}}
  CoT: {{kind: genrm_cot, path: {tiny_model_dir}}}
  Judge: {{kind: judge, path: {tiny_model_dir}}}
  Disc: {{kind: discriminative, path: {tiny_model_dir}}}
cot: {{k: 2, temperature: 1.0, max_rationale_tokens: 8, seed: 0}}
backend: hf
pad_tokens: 400
output_dir: {out}
results_json: {copy}
""")
    argv = ["--config", str(config)]
    proc = run_job(*argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert json.loads(copy.read_text()) == results
    assert results["command"] == "python jobs/adversarial_suite.py " + " ".join(argv)
    names = {"GenRM", "CoT", "Judge", "Disc"}
    assert set(results["verifiers"]) == names | {f"{n} (undefended)" for n in names}
    records = [json.loads(line) for line in (out / "scores.jsonl").open()]
    assert len(records) == results["n_responses"] and results["n_problems"] == 3
    responses = [AttackResponse(**{k: v for k, v in r.items() if k != "rewards"}) for r in records]
    for name, m in results["verifiers"].items():
        assert set(m["classes"]) == set(ATTACKS) | {"right_solution"}
        rewards = [r["rewards"][name] for r in records]
        assert all(0.0 <= x <= 1.0 for x in rewards)
        assert m == json.loads(json.dumps(suite.suite_metrics(responses, rewards)))  # reproducible from scores
    # The defence changes what the model reads for the injected classes only, and there it moves the reward.
    changed = suite.changed_by_defence(responses)
    assert {records[i]["attack"] for i in changed} == {"injected_verdict", "lookalike_verdict", "instruction"}
    for name in names - {"CoT"}:  # deterministic verifiers: a changed prompt gives a changed reward
        assert all(records[i]["rewards"][name] != records[i]["rewards"][name + suite.UNDEFENDED] for i in changed)
    assert "| injected_verdict |" in (out / "results.md").read_text()
