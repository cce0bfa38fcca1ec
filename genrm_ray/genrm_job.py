"""The GenRM training job's config (jobs/train_genrm.py, configs/train/*.yaml) and its checks.

    data   what the data stage builds: problems, samples of the policy (data.base_model, data.policy: the
           policy stage, genrm_ray.train.policy), D_verify / D_cot / D_correct
    genrm  the verifier's training run (genrm_ray.train.TrainConfig)
    eval   how the trained verifier is scored on held-out pairs, and the Best-of-N evaluation after it
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genrm_ray.config import ConfigError, load_config
from genrm_ray.data.build import DataBuildConfig, check_hard_negative_share, check_rationale_format, check_verify_balance
from genrm_ray.data.sft import load_sft_jsonl
from genrm_ray.models.pretrained import resolve_base_model
from genrm_ray.scoring import CotConfig, check_cot
from genrm_ray.tasks.config import load_problems
from genrm_ray.train.config import TrainConfig, check_train_config

REPO = Path(__file__).resolve().parent.parent


@dataclass
class GenRMEvalConfig:
    backend: Literal["vllm", "hf"] = "vllm"  # generation backend that scores p(Yes)
    heldout: str = ""  # verify_direct JSONL of held-out (x, y, label); "" = the built held-out set
    engine_options: dict[str, Any] = field(default_factory=dict)  # make_backend(backend, dir, **options)
    # GenRM-CoT runs are scored on the held-out pairs by sampling rationales (reward = mean p(Yes)):
    # the teacher-forced loss hides a verifier whose few verdict tokens ignore the solution.
    cot: CotConfig = field(default_factory=lambda: CotConfig(k=4, max_rationale_tokens=512))
    # After training: Best-of-N of the verifier just trained against its baselines (jobs/eval_best_of_n.py's
    # config file; models.policy and the verifier's models.* entry are filled in). "" = skip.
    best_of_n_config: str = ""
    best_of_n_overrides: list[str] = field(default_factory=list)  # key=value overrides of that config


@dataclass
class GenRMJobConfig:
    data: DataBuildConfig = field(default_factory=DataBuildConfig)
    # The verifier's training run. data.* files given here are used as they are (no data building);
    # model.path "" = start from the built policy (GenRM is fine-tuned from the policy's checkpoint).
    genrm: TrainConfig = field(default_factory=TrainConfig)
    eval: GenRMEvalConfig = field(default_factory=GenRMEvalConfig)
    run_dir: str = ""  # "" = runs/genrm-<timestamp> under the current directory
    # Where the run's checkpoints, HF export, metrics and summary.json go: "" = the run dir; a shared
    # path or a URI (s3://, gs://) = <storage>/<run dir's name>/ (genrm_ray.runs). Serving and GRPO
    # read the run from there.
    storage: str = ""
    ray_address: str = ""  # "" = $RAY_ADDRESS if set (e.g. under `ray job submit`), else a local Ray


def check_inputs(cfg: GenRMJobConfig) -> None:
    """Everything that can be checked before Ray starts: files exist and parse, choices are valid, base
    models load (each path is replaced by the HF dir it resolves to)."""
    g = cfg.genrm
    if cfg.storage:
        from genrm_ray import runs

        runs.filesystem(runs.as_location(cfg.storage), "storage")  # an unknown scheme or bucket: now, not after training
    check_cot(cfg.eval.cot, "eval.cot")
    check_train_config(g, "genrm")
    check_train_config(cfg.data.policy.train, "data.policy.train")
    check_hard_negative_share(cfg.data.hard_negative_share)
    check_verify_balance(cfg.data.verify_balance)
    check_rationale_format(cfg.data.task.name, cfg.data.rationale_format)
    if not g.data.verify_direct and not g.data.verify_cot:
        load_problems(cfg.data.task, "data.task")  # an unknown task, a missing or bad problems file: before Ray starts
    if g.objective.name not in ("genrm", "discriminative"):
        raise ConfigError(
            f"genrm.objective.name must be 'genrm' or 'discriminative' (the baseline RM) in this job, got "
            f"{g.objective.name!r}; the policy is trained by the policy stage (data.policy.train)"
        )
    given = {key: path for key, path in [("genrm.data.verify_direct", g.data.verify_direct),
                                          ("genrm.data.verify_cot", g.data.verify_cot),
                                          ("genrm.data.correct", g.data.correct),
                                          ("eval.heldout", cfg.eval.heldout)] if path}
    for key, path in given.items():
        if not Path(path).is_file():
            raise ConfigError(f"{key}: no such file {path}")
        kinds = ["verify_direct"] if key in ("genrm.data.verify_direct", "eval.heldout") else [key.rsplit(".", 1)[1]]
        load_sft_jsonl(path, kinds=kinds)  # SFTDataError names file:line
    if given:
        verify = g.data.verify_direct if g.objective.mode == "direct" else g.data.verify_cot
        missing = [k for k, v in [(f"genrm.data.verify_{g.objective.mode}", verify), ("eval.heldout", cfg.eval.heldout),
                                  ("genrm.model.path", g.model.path)] if not v]
        if g.objective.lambda_correct > 0 and not g.data.correct:
            missing.append("genrm.data.correct (or genrm.objective.lambda_correct=0)")
        if missing:
            raise ConfigError(f"dataset files were given, so the data is not built; also set: {', '.join(missing)}")
    if cfg.eval.best_of_n_config:
        from genrm_ray.evaluation.config import check_config as check_eval_config

        # Unknown keys and bad values fail now, not after training (the models do not exist yet).
        check_eval_config(best_of_n_config(cfg, policy="", verifier=""), models=False)
    # Base models may be HF dirs, GGUF files or built-in names: resolved (a GGUF converted once) now,
    # before Ray starts, so the rest of the job sees HF dirs.
    for key, section in [("genrm.model.path", g.model), ("data.base_model.path", cfg.data.base_model),
                         ("data.policy.path", cfg.data.policy)]:
        if section.path:
            section.path = str(resolve_base_model(section.path, key, vllm=True))


def best_of_n_config(cfg: GenRMJobConfig, policy: str, verifier: str):
    """The evaluation config for the verifier this job trains: models.policy and the verifier's entry
    (genrm_direct, genrm_cot or discriminative) point at this run, and the problems are this job's task
    with its generator settings (test split); output under <run dir>/eval."""
    from genrm_ray.evaluation.config import EvalConfig

    path = Path(cfg.eval.best_of_n_config)
    if not path.is_absolute() and not path.is_file():
        path = REPO / path  # configs name repo files relative to the checkout
    if not path.is_file():
        raise ConfigError(f"eval.best_of_n_config: no such file {path}")
    g = cfg.genrm
    key = "discriminative" if g.objective.name == "discriminative" else f"genrm_{g.objective.mode}"
    filled = [f"models.policy={policy}", f"models.{key}={verifier}"] if policy else []
    task = cfg.data.task
    if not task.file:  # generated problems: the task (and settings) the verifier was trained on
        filled += [f"problems.task={task.name}", f"problems.options={json.dumps(task.options)}"]
    return load_config(EvalConfig, path, [*cfg.eval.best_of_n_overrides, *filled])
