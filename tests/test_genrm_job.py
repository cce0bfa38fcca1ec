"""The GenRM training job (genrm_ray.genrm_job, jobs/train_genrm.py): config files, the CLI's bad-input
handling, and a real submission of jobs/train_genrm.py to the session's Ray cluster through the Job
Submission API."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrm_ray.config import ConfigError, load_config
from genrm_ray.data.build import cache_key
from genrm_ray.genrm_job import GenRMJobConfig
from genrm_ray.train.config import check_train_config
from tests.configs import shipped

REPO = Path(__file__).resolve().parent.parent
JOB = REPO / "jobs" / "train_genrm.py"
# The training job's configs: its entry points (configs/train/), the studies' (experiments/) and the tests'.
CONFIGS = shipped("train") + [REPO / "tests" / "configs" / "test_tiny.yaml"]
# What a job package must never carry: the venv (GBs), caches, earlier runs, git objects.
EXCLUDES = [".venv", ".cache", "runs", ".git", "wandb", "benchmarks/results", "**/__pycache__"]


# -- config files -----------------------------------------------------------------------------------


def test_expected_config_files_exist():
    names = {p.name for p in CONFIGS}
    assert {"arithmetic_smollm2_demo.yaml", "test_tiny.yaml"} <= names
    assert any("gpu" in n and "zero3" in n for n in names) and any("gpu" in n and "zero2" in n for n in names)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_loads_and_validates(path):
    cfg = load_config(GenRMJobConfig, path)
    for run in (cfg.genrm, cfg.data.policy.train):
        check_train_config(run)  # the trainer's checks
        assert run.train.max_steps >= 1 and run.scaling.num_workers >= 1
    assert cfg.genrm.objective.name == "genrm"
    assert cfg.data.policy.train.objective.name == "policy"
    if "gpu" in path.name:
        for run in (cfg.genrm, cfg.data.policy.train):
            assert run.scaling.use_gpu and run.deepspeed.bf16
            assert run.scaling.num_workers % 8 == 0  # whole 8-GPU nodes
        assert cfg.data.sampling.num_gpus == 1 and cfg.data.sampling.concurrency == cfg.genrm.scaling.num_workers
    else:
        assert not cfg.genrm.scaling.use_gpu and cfg.data.sampling.num_gpus == 0


def test_data_cache_key_ignores_genrm_and_logging_but_not_data_settings():
    base = load_config(GenRMJobConfig, REPO / "tests" / "configs" / "test_tiny.yaml")
    other_genrm = load_config(GenRMJobConfig, REPO / "tests" / "configs" / "test_tiny.yaml",
                              ["genrm.train.lr=0.5", "data.policy.train.logging.progress_bar=true", "data.cache_dir=/x"])
    more_problems = load_config(GenRMJobConfig, REPO / "tests" / "configs" / "test_tiny.yaml", ["data.task.n_train=25"])
    assert cache_key(base.data) == cache_key(other_genrm.data)
    assert cache_key(base.data) != cache_key(more_problems.data)


def test_unknown_key_in_config_file_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("genrm:\n  train:\n    max_step: 3\n")
    with pytest.raises(ConfigError, match="genrm.train.max_step"):
        load_config(GenRMJobConfig, bad)


# -- the CLI fails fast on bad input ------------------------------------------------------------------


def _run_job(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _bad_sft_file(tmp_path: Path) -> Path:
    path = tmp_path / "verify.jsonl"
    good = {"kind": "verify_direct", "task": "last_letter", "problem_id": "p1", "prompt": "Q: x\nA: y\nVerification:",
            "target": " Yes", "label": True}
    path.write_text(json.dumps(good) + "\n" + "{not json\n")
    return path


def _bad_gsm8k_file(tmp_path: Path) -> Path:
    path = tmp_path / "gsm8k.jsonl"
    rows = [{"question": "How many legs do 2 cats have?", "answer": "2 * 4 = 8\n#### 8"},
            {"question": "How many?", "answer": "Eight."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("case", ["missing_config", "unknown_key", "wrong_type", "missing_dataset", "malformed_dataset",
                                  "bad_backend", "missing_model_dir", "greedy_cot_eval", "zero_stage",
                                  "rationale_format", "bad_problems_file", "no_problems_file"])
def test_bad_input_exits_nonzero_with_clear_message_before_training(case, tmp_path):
    run_dir = tmp_path / "run"
    tiny = ["--config", str(REPO / "tests" / "configs" / "test_tiny.yaml"), f"run_dir={run_dir}"]
    args, expected = {
        "missing_config": (["--config", str(tmp_path / "nope.yaml")], f"--config: no such file {tmp_path / 'nope.yaml'}"),
        "unknown_key": (tiny + ["genrm.train.learning_rate=1e-3"], "unknown config key 'genrm.train.learning_rate'"),
        "wrong_type": (tiny + ["genrm.train.max_steps=many"], "'genrm.train.max_steps' expects int"),
        "missing_dataset": (tiny + [f"genrm.data.verify_direct={tmp_path / 'absent.jsonl'}"],
                            f"genrm.data.verify_direct: no such file {tmp_path / 'absent.jsonl'}"),
        "malformed_dataset": (tiny + [f"genrm.data.verify_direct={_bad_sft_file(tmp_path)}"],
                              f"{tmp_path / 'verify.jsonl'}:2: not valid JSON"),
        "bad_backend": (tiny + ["eval.backend=tensorrt"], "'eval.backend' must be one of ['vllm', 'hf']"),
        "missing_model_dir": (tiny + [f"data.base_model.path={tmp_path}"],
                              f"data.base_model.path: '{tmp_path}' is neither a Hugging Face model dir"),
        "greedy_cot_eval": (tiny + ["eval.cot.temperature=0"], "eval.cot.temperature: temperature=0 (greedy)"),
        "zero_stage": (tiny + ["genrm.deepspeed.zero_stage=1"], "'genrm.deepspeed.zero_stage' must be one of [2, 3]"),
        "rationale_format": (tiny + ["data.rationale_format=decomposed"],
                             "data.rationale_format: task 'last_letter' writes rationales as quoted; got 'decomposed'"),
        "bad_problems_file": (tiny + ["data.task.name=gsm8k", f"data.task.file={_bad_gsm8k_file(tmp_path)}"],
                              f"data.task.file: {tmp_path / 'gsm8k.jsonl'}:2: field 'answer' must end with a line '#### <number>'"),
        "no_problems_file": (tiny + ["data.task.name=gsm8k"], "data.task.file: task 'gsm8k' has no generator"),
    }[case]
    proc = _run_job(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()  # nothing started: no run dir, no Ray


def test_given_dataset_without_heldout_set_is_rejected(tmp_path):
    good = tmp_path / "verify.jsonl"
    good.write_text(_bad_sft_file(tmp_path).read_text().splitlines()[0] + "\n")
    proc = _run_job("--config", str(REPO / "tests" / "configs" / "test_tiny.yaml"), f"genrm.data.verify_direct={good}",
                    "genrm.objective.lambda_correct=0")
    assert proc.returncode == 2
    assert "also set: eval.heldout, genrm.model.path" in proc.stderr


# -- a real job on the session's Ray cluster -------------------------------------------------------------


@pytest.fixture(scope="module")
def job_data_cache(tmp_path_factory) -> Path:
    """One data cache for the module's jobs: the second job reuses what the first built."""
    return tmp_path_factory.mktemp("data-cache")


def _submit_and_wait(ray_cluster, *job_args: str) -> str:
    """Submit jobs/train_genrm.py through the Job Submission API; returns its logs once it succeeded."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_cluster.dashboard_url)
    job_id = client.submit_job(
        # The venv's interpreter: the cluster was started from it, and `python` may be another one.
        entrypoint=f"{sys.executable} jobs/train_genrm.py --config tests/configs/test_tiny.yaml " + " ".join(job_args),
        runtime_env={"working_dir": str(REPO), "excludes": EXCLUDES},
    )
    deadline = time.monotonic() + 480
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED} and time.monotonic() < deadline:
        time.sleep(2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    if status != JobStatus.SUCCEEDED:
        client.stop_job(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-6000:]
    return logs


@pytest.mark.integration
def test_submitted_job_trains_genrm_and_writes_summary_and_hf_export(ray_cluster, tmp_path, job_data_cache):
    run_dir, cache = tmp_path / "run", job_data_cache
    logs = _submit_and_wait(ray_cluster, f"run_dir={run_dir}", f"data.cache_dir={cache}")

    summary = json.loads((run_dir / "summary.json").read_text())
    hf = Path(summary["hf_model"])
    assert hf.is_relative_to(run_dir) and (hf / "config.json").is_file()
    assert any(hf.glob("*.safetensors")) or any(hf.glob("*.bin"))
    assert (run_dir / "loss_curve.png").stat().st_size > 1000
    held = summary["heldout"]
    assert held["n"] > 0 and 0 < held["positives"] < held["n"]
    assert 0.0 <= held["accuracy"] <= 1.0 and 0.0 <= held["auroc"] <= 1.0
    assert set(summary["final_loss"]) >= {"loss_verify", "loss_correct"}
    assert all(math.isfinite(v) and v > 0 for v in summary["final_loss"].values())
    assert summary["steps"] == 3 and summary["zero_stage"] == 3 and summary["train_tokens_per_s"] > 0
    assert summary["data"]["source"] == "built" and Path(summary["data"]["folder"]).is_relative_to(cache)
    # The policy stage trained the policy in its own folder, which the data build then sampled.
    assert Path(summary["data"]["policy"]).is_relative_to(cache / "policies") and summary["data"]["policy_sft_s"] > 0
    assert "[policy] SFT of the base model" in logs
    assert "=== GenRM summary ===" in logs and "AUROC" in logs


@pytest.mark.integration
def test_objective_switch_trains_the_discriminative_baseline(ray_cluster, tmp_path, job_data_cache):
    from genrm_ray.scoring import is_classifier_dir

    run_dir = tmp_path / "disc"
    logs = _submit_and_wait(ray_cluster, f"run_dir={run_dir}", f"data.cache_dir={job_data_cache}",
                            "genrm.objective.name=discriminative", "genrm.objective.lambda_correct=0")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert is_classifier_dir(summary["hf_model"])  # a sequence-classification head, not an LM
    held = summary["heldout"]
    assert held["n"] > 0 and 0.0 <= held["accuracy"] <= 1.0 and 0.0 <= held["auroc"] <= 1.0
    assert 0.0 < held["mean_score_correct"] < 1.0 and 0.0 < held["mean_score_wrong"] < 1.0
    assert set(summary["final_loss"]) == {"loss", "loss_verify"}
    assert "AUROC" in logs
