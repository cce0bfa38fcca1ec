"""The policy stage of the GenRM job: the base model, then SFT of it on the task's reference solutions
(D_correct, ``objective.name: policy``), or a given policy. The data build (genrm_ray.data.build) samples
the policy this stage returns.

The stage has its own cache folder, keyed by what makes the policy (task, base model, SFT settings), so
every data build with those settings shares one policy, and a build that stops after the policy (say,
in sampling) finds it again:

    <cache>/policies/<task>-<key>/   policy_sft.jsonl, policy_run/ (the training run, hf_model/),
                                     base_model/ (a random-init tiny model only), policy.json (written last)
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrm_ray.config import to_dict
from genrm_ray.data import sft
from genrm_ray.data.sft import LabelledSolution
from genrm_ray.models.pretrained import resolve_base_model
from genrm_ray.tasks import get_task
from genrm_ray.tasks.config import TaskConfig, cache_fields, load_problems
from genrm_ray.train.config import TrainConfig


@dataclass
class BaseModelConfig:
    # The pretrained LM the policy (and through it the GenRM) is fine-tuned from: an HF model dir, a
    # .gguf file, or a built-in name such as smollm2-135m-instruct (genrm_ray.models.pretrained).
    # "" = build a random-init tiny model here (size, seed: tests and fast runs).
    path: str = ""
    size: str = "small"  # genrm_ray.models preset of the tiny model
    seed: int = 0


@dataclass
class PolicyConfig:
    path: str = ""  # existing policy model dir: skip SFT and sample from it
    train: TrainConfig = field(default_factory=TrainConfig)  # SFT on D_correct (objective.name: policy)


@dataclass
class PolicyModels:
    base_model: Path
    policy: Path
    stats: dict[str, Any]  # base_model, policy and policy_sft_s (when trained here): the data build's stats.json keeps them
    reused: bool


def drop_inert_policy_keys(train: dict[str, Any]) -> None:
    """Keys of the policy's SFT config that do not change the policy: where it logs and writes, and
    D_verify settings (the policy trains on D_correct only; keys added later would otherwise move
    every folder's hash)."""
    train.pop("logging", None)
    train.pop("output_dir", None)
    train.pop("storage", None)
    train.get("data", {}).pop("max_verify_examples", None)


def policy_key(task: TaskConfig, base_model: BaseModelConfig, policy: PolicyConfig) -> str:
    """Hash of the settings that make the policy."""
    d = {"task": cache_fields(to_dict(task)), "base_model": to_dict(base_model), "policy": to_dict(policy)}
    drop_inert_policy_keys(d["policy"]["train"])
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def train_or_reuse_policy(task: TaskConfig, base_model: BaseModelConfig, policy: PolicyConfig, cache_root: Path,
                          log=print) -> PolicyModels:
    """The base model and the SFT'd policy for ``task``: from the stage's cache folder under
    ``cache_root`` if a finished one matches, else built there."""
    folder = cache_root / "policies" / f"{task.name}-{policy_key(task, base_model, policy)}"
    done = folder / "policy.json"
    if done.is_file():
        stats = json.loads(done.read_text())
        log(f"[policy] reusing the policy at {stats['policy']}")
        return PolicyModels(Path(stats["base_model"]), Path(stats["policy"]), stats, reused=True)
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted SFT: start over
    folder.mkdir(parents=True)

    stats: dict[str, Any] = {}
    # Base model: the tiny model's tokenizer is byte level plus the prompt phrases, so no corpus is needed.
    if base_model.path:
        base = resolve_base_model(base_model.path, "data.base_model.path")
    else:
        from genrm_ray.models import create_tiny_model

        base = create_tiny_model(folder / "base_model", size=base_model.size, seed=base_model.seed)
    stats["base_model"] = str(base)

    if policy.path:
        trained = Path(policy.path)
    else:
        from genrm_ray.train.loop import run_training

        train, _ = load_problems(task, "data.task")
        reference = get_task(task.name, task.options).reference_solution
        references = [LabelledSolution(p, reference(p), True) for p in train]
        cfg = copy.deepcopy(policy.train)
        cfg.model.path = str(base)
        cfg.data.correct = str(sft.write_sft_jsonl(sft.build_correct(references), folder / "policy_sft.jsonl"))
        cfg.objective.name = "policy"
        cfg.output_dir = str(folder / "policy_run")
        log(f"[policy] SFT of the base model on {len(references)} reference solutions ({cfg.train.max_steps} steps)")
        t = time.perf_counter()
        trained = Path(run_training(cfg).hf_model)
        stats["policy_sft_s"] = round(time.perf_counter() - t, 1)
    stats["policy"] = str(trained)
    done.write_text(json.dumps(stats, indent=2) + "\n")  # written last: marks the folder complete
    return PolicyModels(base, trained, stats, reused=False)
