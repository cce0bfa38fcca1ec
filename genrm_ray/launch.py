"""What every job (jobs/*.py) does before its recipe runs: the project's environment, ``--config`` plus
``key=value`` overrides into a typed config, exit code 2 with one line on bad input, the run folder,
and the Ray connection.

    from genrm_ray import launch   # first: caches + offline settings, before torch / vLLM / Ray load

    def main(argv=None) -> int:
        args = launch.parse_args(__doc__, DEFAULT_CONFIG, argv)
        cfg = launch.load(GenRMJobConfig, args, check=check_inputs)   # bad input: "error: ..." and exit 2
        run_dir = launch.run_dir(cfg.run_dir, "genrm", cfg)
        launch.connect_ray(cfg.ray_address)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from genrm_ray import console, env

env.configure(entry_point=True)  # before torch, vLLM, Ray or DeepSpeed are imported by the job
console.configure()  # before ray.data is imported: its console shows warnings only

from genrm_ray.config import load_config, to_dict  # noqa: E402

T = TypeVar("T")

# Bad input: ConfigError, SFTDataError, RunDirError, EvalInputError and the tasks' file errors are all
# ValueErrors raised before anything expensive starts.
BAD_INPUT = (ValueError, OSError)


class InputError(ValueError):
    """A job input that cannot work, found before anything expensive starts."""


def fail(error: BaseException | str) -> NoReturn:
    """Print one line naming the problem and exit 2 (argparse's code for bad input)."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(doc: str | None, default_config: Path | None, argv: Sequence[str] | None,
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """``--config FILE`` (default ``default_config``) and ``key=value`` overrides, plus any job-specific
    arguments ``add_arguments`` adds."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    default_help = f" (default: {default_config.name})" if default_config else ""
    p.add_argument("--config", type=Path, default=default_config, help=f"YAML config{default_help}")
    if add_arguments is not None:
        add_arguments(p)
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-3")
    return p.parse_args(argv)


def load(cls: type[T], args: argparse.Namespace, check: Callable[[T], Any] | None = None,
         overrides: Sequence[str] = ()) -> T:
    """The config ``cls`` from ``args.config`` + ``overrides`` + ``args.overrides``, then ``check(cfg)``;
    bad input of any kind prints one line and exits 2."""
    try:
        if args.config is not None and not Path(args.config).is_file():
            raise InputError(f"--config: no such file {args.config}")
        cfg = load_config(cls, args.config, [*overrides, *args.overrides])
        if check is not None:
            check(cfg)
    except BAD_INPUT as e:
        fail(e)
    return cfg


def run_dir(path: str, prefix: str, cfg: Any = None, config_name: str = "job_config.json") -> Path:
    """The run folder (``path``, or runs/<prefix>-<timestamp>), created, with the config written in it."""
    folder = Path(path or f"runs/{prefix}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        (folder / config_name).write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    return folder


def connect_ray(address: str | None = "", log_dir: Path | None = None, **init_options) -> None:
    """genrm_ray.env.connect_ray, with the vLLM engines' logs of this job in ``log_dir`` (its run dir) rather
    than on the console: the variables go into this process's environment (a local cluster's workers
    inherit it) and, joining a cluster by address from a plain driver, into the job's runtime_env."""
    if log_dir is not None and (quiet := console.engine_log_env(log_dir)):
        os.environ.update(quiet)
        submitted = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ  # ray job submit: the runtime_env is the submitter's
        if (address or os.environ.get("RAY_ADDRESS")) and not submitted and "runtime_env" not in init_options:
            init_options["runtime_env"] = {"env_vars": quiet}
    env.connect_ray(address, **init_options)


__all__ = ["BAD_INPUT", "InputError", "connect_ray", "fail", "load", "parse_args", "run_dir"]
