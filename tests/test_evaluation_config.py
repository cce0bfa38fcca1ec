"""genrm_ray.evaluation.config: config checks name the key, every eval config loads, and
jobs/eval_best_of_n.py rejects bad input before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genrm_ray.config import ConfigError, load_config
from genrm_ray.evaluation.config import EvalConfig, EvalInputError, check_config
from genrm_ray.evaluation.pools import verifier_specs
from tests.configs import shipped
from tests.fixtures.data import GSM8K_HEAD

REPO = Path(__file__).resolve().parent.parent
JOB = REPO / "jobs" / "eval_best_of_n.py"
TEST_CONFIG = REPO / "tests" / "configs" / "eval_test.yaml"


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_config_checks_name_the_key(tiny_model_dir, tmp_path):
    def cfg(*overrides):
        return load_config(EvalConfig, TEST_CONFIG, [f"models.policy={tiny_model_dir}", *overrides])

    check_config(cfg())
    with pytest.raises(EvalInputError, match="pool.n"):
        check_config(cfg("ns=[1, 64]"))
    with pytest.raises(EvalInputError, match="report_n"):
        check_config(cfg("report_n=3"))
    with pytest.raises(EvalInputError, match="no split 'validaton'"):
        check_config(cfg("problems.splits=[validaton]"))
    with pytest.raises(EvalInputError, match="models.genrm_cot"):
        check_config(cfg(f"models.genrm_cot={tmp_path}"))
    with pytest.raises(EvalInputError, match="models.policy is required"):
        check_config(load_config(EvalConfig, TEST_CONFIG))
    with pytest.raises(EvalInputError, match="k_curve"):
        check_config(cfg("k_curve=[8]"))
    with pytest.raises(ConfigError, match="cot.temperature: temperature=0 .*identical"):
        check_config(cfg("cot.temperature=0.0"))
    with pytest.raises(EvalInputError, match="cot.adaptive"):
        check_config(cfg("cot.adaptive=true"))
    with pytest.raises(ConfigError, match="pool.max_tokens must be >= 1"):
        check_config(cfg("pool.max_tokens=0"))
    with pytest.raises(EvalInputError, match="unique"):
        verifier_specs(cfg(f"models.genrm_direct={tiny_model_dir}", f"models.extra_direct={{GenRM: {tiny_model_dir}}}"))


@pytest.mark.parametrize("path", shipped("eval"), ids=lambda p: p.name)
def test_every_eval_config_loads_and_is_consistent(path, tiny_model_dir):
    cfg = load_config(EvalConfig, path, [f"models.policy={tiny_model_dir}"])
    # Model dirs and problem files name paths on the machines the config is for: swap in local ones.
    cfg.models = type(cfg.models)(policy=str(tiny_model_dir))
    # A config whose problems come from --problems (its header says which file) gets the local one.
    cfg.problems.files = [GSM8K_HEAD for _ in cfg.problems.files] or ([] if cfg.problems.splits else [GSM8K_HEAD])
    check_config(cfg)
    assert cfg.pool.n >= 8 and max(cfg.ns) <= cfg.pool.n


def test_job_rejects_a_bad_problem_file_before_starting_anything(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Take the last letters of the words in \\"ab cd\\" and concatenate them.", "answer": "bd"}\n'
                   '{"question": "q"}\n')
    proc = run_job("--config", str(TEST_CONFIG), "--problems", str(bad), f"models.policy={tiny_model_dir}")
    assert proc.returncode == 2 and f"{bad}:2" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_job("--config", str(TEST_CONFIG), "--problems", str(tmp_path / "missing.jsonl"), f"models.policy={tiny_model_dir}")
    assert proc.returncode == 2 and "missing.jsonl" in proc.stderr
