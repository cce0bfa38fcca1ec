"""A quiet console for the jobs: vLLM's and Ray Data's log lines go to files, so what a job prints is its
progress bars, one summary line per phase and the result.

- Ray Data (in the driver): its console handler logs warnings only; everything still goes to
  ``ray-data.log`` in the Ray session's log folder (Ray Data's own file handler).
- vLLM (in every process that imports it, Ray workers included): INFO and up go to ``<run dir>/vllm.log``,
  errors also to the console. Set through ``VLLM_LOGGING_CONFIG_PATH``, which a local Ray cluster's
  workers inherit from the driver and a cluster joined by address gets through the job's runtime_env.

``configure()`` runs when genrm_ray.launch is imported (before ray.data is); ``engine_log_env(run_dir)``
gives the environment for a run's engines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from genrm_ray.env import cache_dir

ENGINE_LOG = "vllm.log"
CONSOLE_LEVEL = "WARNING"
# vLLM warns at every engine start about what a CPU build lacks (Triton, inductor settings): the
# console shows its errors only, the run's vllm.log everything from INFO.
ENGINE_CONSOLE_LEVEL = "ERROR"


def ray_data_logging_config() -> dict:
    """Ray Data's default logging config with its console handler at CONSOLE_LEVEL."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ray": {"format": "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"}},
        "filters": {"console_filter": {"()": "ray.data._internal.logging.HiddenRecordFilter"}},
        "handlers": {
            "file": {"class": "ray.data._internal.logging.SessionFileHandler", "formatter": "ray", "filename": "ray-data.log"},
            "console": {"class": "ray._private.log.PlainRayHandler", "formatter": "ray", "level": CONSOLE_LEVEL,
                        "filters": ["console_filter"]},
        },
        "loggers": {"ray.data": {"level": "DEBUG", "handlers": ["file", "console"], "propagate": False}},
    }


def vllm_logging_config(log_file: Path) -> dict:
    """vLLM's logger: everything from INFO to ``log_file``, errors also to stderr."""
    fmt = {"()": "vllm.logging_utils.NewLineFormatter", "datefmt": "%m-%d %H:%M:%S",
           "format": "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"vllm": fmt},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "vllm", "level": "INFO"},
            "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "vllm",
                        "level": ENGINE_CONSOLE_LEVEL},
        },
        "loggers": {"vllm": {"handlers": ["file", "console"], "level": "INFO", "propagate": False}},
    }


def configure() -> None:
    """Ray Data's console at CONSOLE_LEVEL (an operator's RAY_DATA_LOGGING_CONFIG wins)."""
    if "RAY_DATA_LOGGING_CONFIG" in os.environ:
        return
    path = cache_dir() / "logging" / "ray_data.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(ray_data_logging_config()))
    os.environ["RAY_DATA_LOGGING_CONFIG"] = str(path)


def engine_log_env(run_dir: Path) -> dict[str, str]:
    """The environment that sends this run's vLLM logs to ``<run_dir>/vllm.log`` (the config file is written
    beside it); {} where the operator configured vLLM's logging already."""
    if "VLLM_LOGGING_CONFIG_PATH" in os.environ or os.environ.get("VLLM_CONFIGURE_LOGGING") == "0":
        return {}
    run_dir = Path(run_dir).resolve()
    config = run_dir / "vllm_logging.json"
    config.write_text(json.dumps(vllm_logging_config(run_dir / ENGINE_LOG), indent=2) + "\n")
    logging.getLogger(__name__).debug("vLLM logs: %s", run_dir / ENGINE_LOG)
    return {"VLLM_LOGGING_CONFIG_PATH": str(config)}


def engine_log_file() -> Path | None:
    """The file this process's vLLM logs go to (engine_log_env's config), or None where none is set."""
    config = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
    if not config or not Path(config).is_file():
        return None
    try:
        name = json.loads(Path(config).read_text())["handlers"]["file"]["filename"]
    except (ValueError, KeyError, TypeError):
        return None  # an operator's own config: leave stderr alone
    return Path(name)


def stderr_to_engine_log() -> Path | None:
    """Send this process's stderr (fd 2, so child processes too) to the run's engine log.

    For Ray actors that only host an engine (the samplers of the data build and the evaluation's pools,
    the evaluation's verifier scorers). vLLM's shutdown kills multiprocessing's resource tracker,
    Python relaunches it, and the new tracker prints a KeyError traceback for every shared-memory block
    it never saw; a healthy run's console should show neither those nor the loading bars and library
    warnings of every engine start. The actor's errors still reach the driver, as the exceptions Ray
    raises there."""
    path = engine_log_file()
    if path is None:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    return path


@contextlib.contextmanager
def engine_stderr_to_log() -> Iterator[Path | None]:
    """stderr_to_engine_log for a stretch of a driver that runs an engine in its own process (the
    training job's held-out scoring): its loading bars and library warnings go to the engine log, and
    the console's stderr is back afterwards, before any error of the block is printed."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        yield stderr_to_engine_log()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
