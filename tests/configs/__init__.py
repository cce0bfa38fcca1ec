"""Config files the tests read: the test-sized fixtures in this folder, and ``shipped(job)``, every config a
job's tests must load: the entry points in configs/<job>/ and the study records in experiments/*/; and
``job_module(name)``, a job script imported as a module."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# configs/<folder> of each job, and the file-name prefix of its configs under experiments/<study>/.
JOB_FOLDERS = {"train": "genrm_", "eval": "eval_", "serve": "serve_", "grpo": "grpo_", "adversarial": "adversarial_"}


def shipped(job: str) -> list[Path]:
    """Every shipped config of ``job`` (a key of JOB_FOLDERS): configs/<job>/*.yaml, then the experiments'."""
    prefix = JOB_FOLDERS[job]
    return sorted((REPO / "configs" / job).glob("*.yaml")) + sorted((REPO / "experiments").glob(f"*/{prefix}*.yaml"))


def job_module(name: str) -> ModuleType:
    """jobs/<name>.py imported as a module, its main() not run (the jobs only import config code at the top)."""
    spec = importlib.util.spec_from_file_location(f"_job_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
