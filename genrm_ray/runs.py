"""Where a run's outputs are: the one answer to "which folder is this run's HF export, its policy, its
summary", and the one check that a folder is a Hugging Face model.

A model path in any config may name the model folder itself or a run folder that holds one:

    runs/<genrm run>/genrm/hf_model   jobs/train_genrm.py's verifier export; its summary.json names the
                                      policy the data stage trained or used (data.policy)
    runs/<run>/hf_model               jobs/train_grpo.py's policy, or a bare genrm_ray.train output dir

A run folder also records its job's config (RUN_CONFIGS), and so the task it trained on (RunDir.task).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class RunDirError(ValueError):
    """A path that is neither a Hugging Face model folder nor a run folder holding one."""


def is_hf_model_dir(path: str | Path) -> bool:
    """A saved Hugging Face model: a folder with config.json (weights and tokenizer sit beside it)."""
    return (Path(path) / "config.json").is_file()


def require_hf_model_dir(path: str | Path, key: str) -> Path:
    """``path`` as a Path if it is an HF model folder, else RunDirError naming ``key``."""
    if not is_hf_model_dir(path):
        raise RunDirError(f"{key}: {path} is not a Hugging Face model dir (no config.json)")
    return Path(path)


# The config a job writes into its run folder (genrm_ray.launch.run_dir), and where the task's name is in it.
RUN_CONFIGS = {"job_config.json": ("data", "task", "name"), "grpo_config.json": ("task", "name")}


@dataclass(frozen=True)
class RunDir:
    path: Path

    # The exports a run folder can hold, most specific first.
    EXPORTS = ("genrm/hf_model", "hf_model")

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    def summary(self) -> dict[str, Any]:
        return json.loads(self.summary_file.read_text()) if self.summary_file.is_file() else {}

    def hf_model(self) -> Path | None:
        """The run's model export, or None."""
        return next((self.path / e for e in self.EXPORTS if is_hf_model_dir(self.path / e)), None)

    def policy(self) -> Path | None:
        """The policy a GenRM training run used (summary.json's data.policy), or None."""
        policy = self.summary().get("data", {}).get("policy")
        return Path(policy) if policy else None

    def task(self) -> str | None:
        """The task the run trained on, as its job recorded it (RUN_CONFIGS), or None."""
        for name, keys in RUN_CONFIGS.items():
            if not (self.path / name).is_file():
                continue
            value: Any = json.loads((self.path / name).read_text())
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str) and value:
                return value
        return None

    @classmethod
    def holding(cls, path: str | Path) -> RunDir:
        """The run folder ``path`` belongs to: ``path`` itself, or the run one of whose EXPORTS it is."""
        p = Path(path).resolve()
        for export in cls.EXPORTS:
            depth = len(Path(export).parts)
            if p.parts[-depth:] == Path(export).parts:
                return cls(p.parents[depth - 1])
        return cls(p)

    def is_genrm_run(self) -> bool:
        """A jobs/train_genrm.py run (a GRPO run's summary has no data section)."""
        return (self.path / "genrm").is_dir() or "data" in self.summary()


def resolve_model_dir(path: str | Path, key: str) -> Path:
    """The HF model folder ``path`` names: the folder itself, or the export of the run it holds."""
    p = Path(path)
    if is_hf_model_dir(p):
        return p
    export = RunDir(p).hf_model()
    if export is None:
        raise RunDirError(f"{key}: {path} is neither a Hugging Face model dir nor a run dir holding one "
                          f"({' or '.join(RunDir.EXPORTS)}; no config.json found)")
    return export


def resolve_policy_dir(path: str | Path, key: str) -> Path:
    """The policy's HF folder: ``path`` itself, or the policy a GenRM training run used. A GenRM run
    never resolves to its own verifier export: that is not the policy."""
    run = RunDir(Path(path))
    if not is_hf_model_dir(path) and run.is_genrm_run():
        policy = run.policy()
        if policy is None:
            raise RunDirError(f"{key}: {path} is a GenRM run dir whose summary.json names no policy "
                              "(data.policy); give the policy's HF dir instead")
        return resolve_model_dir(policy, f"{key} (from {run.summary_file})")
    return resolve_model_dir(path, key)
