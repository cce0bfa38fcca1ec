"""The quiet console's pieces that need no Ray or vLLM: where an engine process's stderr goes."""

from __future__ import annotations

import subprocess
import sys

from genrm_ray import console


def test_engine_actor_stderr_goes_to_the_runs_engine_log(tmp_path):
    env = console.engine_log_env(tmp_path)
    log = tmp_path / console.ENGINE_LOG
    # A child process too (multiprocessing's resource tracker is one) writes to the log, not the console.
    script = ("import subprocess, sys\n"
              "from genrm_ray import console\n"
              "assert console.stderr_to_engine_log() is not None\n"
              "print('from the actor', file=sys.stderr, flush=True)\n"
              "subprocess.run([sys.executable, '-c', 'import sys; print(\"from its child\", file=sys.stderr)'], check=True)\n")
    done = subprocess.run([sys.executable, "-c", script], env={**_env(), **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "from the actor" not in done.stderr and "from its child" not in done.stderr
    assert "from the actor" in log.read_text() and "from its child" in log.read_text()


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
