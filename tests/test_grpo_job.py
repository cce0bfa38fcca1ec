"""jobs/train_grpo.py end to end, run as the job it is: a subprocess from the repository root that
joins the session's Ray cluster (``ray_cluster.env``: RAY_ADDRESS and the auth token) and reaches the
session's served GenRM by ``reward.app_name`` or ``reward.url``. A few GRPO steps (handle, then HTTP),
checkpoints, resume; a job whose actors cannot be placed fails naming them and deletes the reward app it
deployed. Bad config is checked on ``load_grpo_config`` itself, and once through the job (exit code 2)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genrm_ray.config import ConfigError
from genrm_ray.rl.compare import REEVALUATED_FILE, evaluate_run_exports, read_heldout, read_rollouts
from genrm_ray.rl.config import load_grpo_config
from genrm_ray.rl.step import HELDOUT_FILE
from tests.configs import shipped

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "jobs" / "train_grpo.py"
TEST_CONFIG = str(REPO / "tests" / "configs" / "grpo_test.yaml")
SERVE_TEST_CONFIG = str(REPO / "tests" / "configs" / "serve_test.yaml")


def run_job(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python jobs/train_grpo.py --config tests/configs/grpo_test.yaml *args`` from the repo root."""
    return subprocess.run([sys.executable, str(JOB), "--config", TEST_CONFIG, *args], cwd=REPO,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def succeeded(proc: subprocess.CompletedProcess) -> bool:
    if proc.returncode != 0:  # the job's own words, for the failure report
        print(f"exit code {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}")
    return proc.returncode == 0


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.integration
def test_grpo_steps_with_served_genrm_then_resume(ray_cluster, reward_server, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "grpo"
    common = [f"models.policy={tiny_model_dir}", f"run_dir={run_dir}"]
    assert succeeded(run_job([*common, f"reward.app_name={reward_server.app_name}"], ray_cluster.env))
    logged = rows(run_dir)
    assert [x["step"] for x in logged] == [0, 1, 2, 3]
    assert [x["step"] for x in logged if "pass_at_1" in x] == [0, 2, 3]  # step 0, every 2, and the last
    assert_heldout_matches(run_dir, logged)
    assert_rollouts_match(run_dir, logged)
    for x in logged[1:]:
        assert 0.0 <= x["reward_mean"] <= 1.0
        assert x["k_used"] == 2  # genrm_cot with reward.cot.k=2 from the config, as the server reported it
        assert x["response_tokens"] > 0
        assert x["rollout_s"] > 0 and x["update_s"] > 0
        assert x["kl"] >= 0.0
        assert 0.0 < x["node_memory_gib"] < 1024  # the node's memory in use at the step's end
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_2", "step_3"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3 and (Path(summary["hf_model"]) / "config.json").is_file()
    assert (run_dir / "grpo_curves.png").stat().st_size > 0

    # Resume: a longer run in the same dir starts after the last checkpoint, not from scratch. It reaches
    # the same app over HTTP (bearer token from the job's environment) instead of by its Serve handle.
    resumed = run_job([*common, f"reward.url={reward_server.base_url}", "train.steps=4"],
                      ray_cluster.env | {"GENRM_REWARD_TOKEN": reward_server.token})
    assert succeeded(resumed)
    assert "resumed from" in resumed.stdout
    logged = rows(run_dir)
    assert [x["step"] for x in logged] == [0, 1, 2, 3, 4]
    assert logged[4]["k_used"] == 2 and 0.0 <= logged[4]["reward_mean"] <= 1.0  # the server's CoT votes, over HTTP
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4
    assert_heldout_matches(run_dir, logged)
    assert_rollouts_match(run_dir, logged)  # steps after the checkpoint are not logged twice


@pytest.mark.integration
@pytest.mark.e2e  # two fresh vLLM engines for runs older than heldout.jsonl: `make test-e2e`, not CI
def test_a_run_without_heldout_outcomes_is_re_evaluated_from_its_exports(ray_cluster, reward_server, tiny_model_dir,
                                                                          tmp_path):
    """A run made before heldout.jsonl was logged: its start and its exported policy, decoded afresh,
    reproduce the pass@1 the run logged, problem by problem."""
    run_dir = tmp_path / "grpo"
    assert succeeded(run_job([f"models.policy={tiny_model_dir}", f"run_dir={run_dir}",
                              f"reward.app_name={reward_server.app_name}", "train.steps=2"], ray_cluster.env))
    logged_outcomes = read_heldout(run_dir)
    (run_dir / HELDOUT_FILE).rename(run_dir / "heldout.logged.jsonl")
    re_evaluated = evaluate_run_exports(run_dir)
    assert sorted(re_evaluated) == ["step_0", "step_2"]
    assert all(r["re_evaluated"] == pytest.approx(r["logged"]) for r in re_evaluated.values())
    again = read_heldout(run_dir)
    assert again[0] == logged_outcomes[0] and again[2] == logged_outcomes[2]
    assert json.loads((run_dir / REEVALUATED_FILE).read_text()) == re_evaluated  # kept for compare's report


def assert_rollouts_match(run_dir: Path, logged: list[dict]) -> None:
    """rollouts.jsonl holds every step's rollouts once, graded, with the rewards whose mean was logged."""
    rollout = json.loads((run_dir / "grpo_config.json").read_text())["rollout"]
    steps = read_rollouts(run_dir)
    assert sorted(steps) == [x["step"] for x in logged[1:]]
    for x in logged[1:]:
        mine = steps[x["step"]]
        assert len(mine) == rollout["prompts_per_step"] * rollout["group_size"]
        assert sum(r["reward"] for r in mine) / len(mine) == pytest.approx(x["reward_mean"], abs=1e-3)
        assert sum(r["correct"] for r in mine) / len(mine) == pytest.approx(x["train_accuracy"])


def assert_heldout_matches(run_dir: Path, logged: list[dict]) -> None:
    """Each held-out evaluation's per-problem outcomes (heldout.jsonl, for paired comparisons) are of
    the same n_heldout problems, and their mean is the pass@1 in the metrics."""
    evals = read_heldout(run_dir)
    n_heldout = json.loads((run_dir / "grpo_config.json").read_text())["task"]["n_heldout"]
    assert sorted(evals) == [x["step"] for x in logged if "pass_at_1" in x]
    for x in logged:
        if "pass_at_1" in x:
            assert len(evals[x["step"]]) == n_heldout
            assert sum(evals[x["step"]].values()) / len(evals[x["step"]]) == pytest.approx(x["pass_at_1"])
    assert len({frozenset(e) for e in evals.values()}) == 1


@pytest.mark.integration
@pytest.mark.e2e  # waits out its 60 s timeout after deploying an app: `make test-e2e`; CI runs the wait itself
def test_an_actor_that_cannot_be_placed_fails_the_job_naming_it_and_its_reward_app_goes(ray_cluster, reward_server,
                                                                                        tiny_model_dir, tmp_path):
    """Ray keeps an actor it cannot place pending without an error; the job must not wait on it forever
    at step 1 (as a refresh run whose actors asked for 2.25 of 2 CPUs once did). The job deployed its own
    GenRM app (genrm_direct, no url / app_name): when it fails, that app is gone, and the session's app,
    which it did not start, still runs. (A policy group that cannot be placed, and the wait alone: tests/test_grpo_actors.py.)"""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    app = f"grpo-cleanup-{os.getpid()}"
    overrides = f"[http.app_name={app}, http.route_prefix=/{app}, deployment.num_cpus=0.25, deployment.max_replicas=1]"
    proc = run_job([f"models.policy={tiny_model_dir}", f"models.verifier={tiny_model_dir}", f"run_dir={tmp_path / 'grpo'}",
                    "reward.source=genrm_direct", f"reward.serve_config={SERVE_TEST_CONFIG}",
                    f"reward.serve_overrides={overrides}", "rollout.num_cpus=64", "train.placement_timeout_s=60"],
                   ray_cluster.env)
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert f"as Serve app {app!r}" in proc.stdout  # the app was up before the actors failed
    # 60 s: the same timeout bounds the policy ranks' start (DeepSpeed init), which must succeed here.
    lines = [x for x in proc.stderr.splitlines() if "not started within 60 s (train.placement_timeout_s)" in x]
    assert lines, proc.stderr[-4000:]
    line = lines[-1]
    assert "RolloutActor (rollout.num_cpus=64)" in line and "CPUs are free" in line
    assert not (tmp_path / "grpo" / "metrics.jsonl").exists()  # it failed before its first step
    assert app not in serve.status().applications
    with pytest.raises(RayServeException, match=f"Application '{app}' does not exist"):
        serve.get_app_handle(app)
    assert serve.status().applications[reward_server.app_name].status == "RUNNING"


@pytest.fixture
def policy_dir(tmp_path, monkeypatch) -> Path:
    """A models.policy that passes the model check, which is stubbed here: it loads the tokenizer and
    imports vLLM (tested in tests/test_models_pretrained.py), and these tests are about the other keys."""
    import genrm_ray.rl.config

    monkeypatch.setattr(genrm_ray.rl.config, "resolve_base_model", lambda spec, key, vllm=False: Path(spec))
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.json").write_text("{}\n")
    return tmp_path / "policy"


@pytest.mark.parametrize("override, message", [
    ("reward.source=magic",
     "reward.source: unknown reward source 'magic'; known: ['discriminative', 'genrm_cot', 'genrm_direct', 'oracle'], or module:Class"),
    ("train.deepspeed.zero_stage=1", "'train.deepspeed.zero_stage' must be one of [2, 3], got 1"),
    ("train.placement_timeout_s=0", "train.placement_timeout_s must be > 0"),
    ("task.heldout_split=test", "task.heldout_split=test is reserved for Best-of-N"),
    ("rollout.group_size=1", "rollout.group_size must be >= 2"),
    ("train.torch_threads=-1", "train.torch_threads must be >= 0, got -1"),
    ("rollout.prompts_per_step=5", "rollout.prompts_per_step=5 must be a multiple of rollout.chunks"),
])
def test_bad_config_fails_naming_the_key(override, message, policy_dir):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_grpo_config(TEST_CONFIG, [f"models.policy={policy_dir}", "reward.source=oracle", override])


def test_missing_policy_names_the_key():
    with pytest.raises(ConfigError, match="models.policy: '/nonexistent' is neither a Hugging Face model dir"):
        load_grpo_config(TEST_CONFIG, ["models.policy=/nonexistent", "reward.source=oracle"])


def test_missing_from_run_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="models.from_run: .* train the verifier first with jobs/train_genrm.py"):
        load_grpo_config(TEST_CONFIG, [f"models.from_run={tmp_path}"])


def test_the_job_exits_2_on_bad_config_before_ray(policy_dir, tmp_path):
    run_dir = tmp_path / "never"
    proc = run_job([f"models.policy={policy_dir}", "reward.source=oracle", f"run_dir={run_dir}",
                    "train.deepspeed.zero_stage=1"], timeout=300)
    assert proc.returncode == 2
    assert "error: " in proc.stderr and "'train.deepspeed.zero_stage' must be one of [2, 3], got 1" in proc.stderr
    assert "[grpo]" not in proc.stdout and "[ray]" not in proc.stdout and not run_dir.exists()  # stopped at the config


@pytest.mark.parametrize("path", shipped("grpo"), ids=lambda p: p.name)
def test_every_grpo_config_file_loads(path):
    from genrm_ray.config import load_config
    from genrm_ray.rl.config import GRPOConfig

    cfg = load_config(GRPOConfig, path)  # unknown keys / wrong types fail here
    assert cfg.rollout.group_size >= 2 and cfg.task.heldout_split != "test"


@pytest.mark.parametrize("overrides, message", [
    (["reward.source=oracle", "refresh.every=2"], "refresh.every=2: the verifier refresh trains the GenRM this job serves"),
    (["reward.source=genrm_direct", "reward.url=http://127.0.0.1:9", "refresh.every=1"],
     "needs reward.source genrm_cot or genrm_direct without reward.url / reward.app_name"),
    (["reward.source=oracle", "refresh.every=-1"], "refresh.every must be >= 0 (0 = no refresh), got -1"),
    (["reward.source=genrm_direct", "refresh.every=1", "refresh.steps=0"], "refresh.steps must be >= 1, got 0"),
    (["reward.source=genrm_direct", "refresh.every=1", "refresh.lr=0"], "refresh.lr must be > 0"),
])
def test_bad_refresh_config_fails_naming_the_key(overrides, message, policy_dir, tiny_model_dir):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_grpo_config(TEST_CONFIG, [f"models.policy={policy_dir}", f"models.verifier={tiny_model_dir}",
                                       f"reward.serve_config={SERVE_TEST_CONFIG}", *overrides])


def test_refresh_points_the_served_replicas_at_the_trainer(policy_dir, tiny_model_dir):
    """With refresh on, the app this job starts follows the trainer's weights (serving reload.actor) and its
    engine can load weights in place; without it, the app serves the checkpoint as it is."""
    from genrm_ray.engine.weight_sync import EXTENSION
    from genrm_ray.rl.config import serve_config
    from genrm_ray.rl.refresh import NAMESPACE, trainer_name
    from genrm_ray.serving.config import engine_options

    common = [f"models.policy={policy_dir}", f"models.verifier={tiny_model_dir}", "reward.source=genrm_direct",
              f"reward.serve_config={SERVE_TEST_CONFIG}"]
    served = serve_config(load_grpo_config(TEST_CONFIG, [*common, "refresh.every=3"]))
    assert (served.reload.actor, served.reload.namespace) == (trainer_name(served.http.app_name), NAMESPACE)
    assert engine_options(served)["worker_extension_cls"] == EXTENSION
    plain = serve_config(load_grpo_config(TEST_CONFIG, common))
    assert plain.reload.actor == "" and "worker_extension_cls" not in engine_options(plain)


@pytest.mark.integration
def test_grpo_with_verifier_refresh_runs_and_exports_the_verifier(ray_cluster, reward_server, tiny_model_dir, tmp_path):
    """refresh.every=1 on the job's own GenRM app: every step logs a refresh (trained, or skipped when the
    tiny random policy's rollouts are all wrong), the refreshed verifier is exported, and the app and
    the trainer are gone after the job. No KL term (kl_coef=0: no reference actor)."""
    import ray
    from ray import serve

    from genrm_ray.rl.refresh import NAMESPACE, trainer_name

    app = f"grpo-refresh-{os.getpid()}"
    overrides = f"[http.app_name={app}, http.route_prefix=/{app}, deployment.num_cpus=0.25, deployment.max_replicas=1]"
    run_dir = tmp_path / "grpo"
    proc = run_job([f"models.policy={tiny_model_dir}", f"models.verifier={tiny_model_dir}", f"run_dir={run_dir}",
                    "reward.source=genrm_direct", f"reward.serve_config={SERVE_TEST_CONFIG}",
                    f"reward.serve_overrides={overrides}", "train.steps=2", "refresh.every=1", "refresh.steps=1",
                    "refresh.deepspeed.bf16=false", "train.kl_coef=0"], ray_cluster.env)
    assert succeeded(proc)
    steps = [x for x in rows(run_dir) if x["step"] > 0]
    assert [x["step"] for x in steps] == [1, 2]
    for x in steps:
        assert x["kl"] == 0.0
        assert x["k_used"] == 1  # direct GenRM: one verdict per item, no rationales (as the server reports it)
        assert x["refresh_skipped"] in (0.0, 1.0) and x["refresh_s"] >= 0
        if x["refresh_skipped"] == 0.0:
            assert x["refresh_examples"] >= 2 and x["verifier_version"] >= 1
    assert (run_dir / "verifier_hf" / "config.json").is_file()
    assert (run_dir / "checkpoints" / "step_2" / "verifier_hf" / "config.json").is_file()
    assert app not in serve.status().applications
    with pytest.raises(ValueError):
        ray.get_actor(trainer_name(app), namespace=NAMESPACE)


def test_from_run_gives_the_task_with_its_generator_settings(tmp_path, policy_dir):
    run, policy = tmp_path / "run", policy_dir
    run.mkdir()
    options = {"min_empty": 4, "max_empty": 6}
    (run / "summary.json").write_text(json.dumps({"task": {"name": "mini_sudoku", "options": options},
                                                  "data": {"policy": str(policy)}}))
    cfg = load_grpo_config(str(REPO / "configs" / "grpo" / "demo.yaml"), [f"models.from_run={run}", "reward.source=oracle"])
    assert (cfg.task.name, cfg.task.options) == ("mini_sudoku", options)
    named = load_grpo_config(str(REPO / "configs" / "grpo" / "demo.yaml"),
                             [f"models.from_run={run}", "reward.source=oracle", "task.name=countdown"])
    assert (named.task.name, named.task.options) == ("countdown", {})  # a task named in the config keeps its own settings
