"""The quiet console's pieces that need no Ray or vLLM: where an engine process's stderr goes."""

from __future__ import annotations

import subprocess
import sys

from genrm_ray import console

# A child process too (multiprocessing's resource tracker is one) must write where its parent's fd 2 points.
CHILD_PRINTS = "subprocess.run([sys.executable, '-c', 'import sys; print(\"{}\", file=sys.stderr)'], check=True)"


def run_with_engine_log(tmp_path, body: str) -> tuple[subprocess.CompletedProcess, str]:
    """``body`` run in a fresh Python whose environment names tmp_path's engine log; its result and the log."""
    script = "import subprocess, sys\nfrom genrm_ray import console\n" + body
    env = {**_env(), **console.engine_log_env(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    log = tmp_path / console.ENGINE_LOG
    return done, log.read_text() if log.is_file() else ""


def test_engine_actor_stderr_goes_to_the_runs_engine_log(tmp_path):
    done, log = run_with_engine_log(tmp_path, "assert console.stderr_to_engine_log() is not None\n"
                                              "print('from the actor', file=sys.stderr, flush=True)\n"
                                              + CHILD_PRINTS.format("from its child") + "\n")
    assert done.returncode == 0, done.stderr
    assert "from the actor" not in done.stderr and "from its child" not in done.stderr
    assert "from the actor" in log and "from its child" in log


def test_a_drivers_engine_stretch_goes_to_the_log_and_the_console_comes_back(tmp_path):
    done, log = run_with_engine_log(tmp_path, "with console.engine_stderr_to_log() as path:\n"
                                              "    assert path is not None\n"
                                              "    print('engine noise', file=sys.stderr, flush=True)\n"
                                              "    " + CHILD_PRINTS.format("child noise") + "\n"
                                              "print('after the block', file=sys.stderr, flush=True)\n"
                                              "with console.engine_stderr_to_log():\n"
                                              "    raise SystemExit('failed in the block')\n")
    assert done.returncode == 1
    assert "engine noise" not in done.stderr and "child noise" not in done.stderr
    assert "after the block" in done.stderr and "failed in the block" in done.stderr  # the error reaches the console
    assert "engine noise" in log and "child noise" in log


def test_without_an_engine_log_stderr_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("VLLM_LOGGING_CONFIG_PATH", raising=False)
    assert console.engine_log_file() is None and console.stderr_to_engine_log() is None
    own = tmp_path / "operator.json"
    own.write_text('{"version": 1}')  # an operator's own vLLM logging config: not ours to follow
    monkeypatch.setenv("VLLM_LOGGING_CONFIG_PATH", str(own))
    assert console.engine_log_file() is None


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "VLLM_LOGGING_CONFIG_PATH"}
