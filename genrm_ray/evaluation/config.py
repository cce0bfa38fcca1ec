"""The Best-of-N evaluation's config (jobs/eval_best_of_n.py, configs/eval/*.yaml) and every check that
needs neither Ray nor a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genrm_ray.config import ConfigError
from genrm_ray.data.sampling import SamplingConfig, check_sampling
from genrm_ray.models.pretrained import BaseModelError, resolve_base_model
from genrm_ray.runs import RunDirError, resolve_model_dir, resolve_policy_dir
from genrm_ray.scoring import CotConfig, check_cot
from genrm_ray.tasks import get_task


@dataclass
class ModelsConfig:
    # Each entry: an HF model dir, or a training job's run dir holding one (genrm/hf_model/ or hf_model/).
    # "" = that verifier is not evaluated.
    policy: str = ""  # samples the pool; also the LLM-as-a-judge baseline. A GenRM run dir = its policy
    # (summary.json's data.policy)
    genrm_direct: str = ""
    genrm_cot: str = ""
    discriminative: str = ""
    # The LLM-as-a-judge baselines' model: "" = the policy; else an HF dir, a .gguf file or a built-in
    # name (smollm2-135m-instruct: the untrained base, asked the same verification question).
    judge: str = ""
    # More GenRMs for ablations (e.g. trained with lambda_correct=0): display name -> model dir.
    extra_direct: dict[str, str] = field(default_factory=dict)
    extra_cot: dict[str, str] = field(default_factory=dict)


@dataclass
class ProblemsConfig:
    task: str = "last_letter"
    # Generator settings of a reasoning-gym task (e.g. {min_empty: 6, max_empty: 8} for mini_sudoku).
    options: dict[str, Any] = field(default_factory=dict)
    splits: list[str] = field(default_factory=lambda: ["test", "ood"])  # generated splits to evaluate
    n: int = 200  # problems per generated split
    n_ood: int = 100  # problems of the "ood" split
    seed: int = 0
    files: list[str] = field(default_factory=list)  # JSONL question/answer files (also --problems)


@dataclass
class ScoringPassConfig:
    """How each verifier's scoring pass runs over the pool (one Ray Data pass per verifier)."""

    backend: Literal["vllm", "hf"] = "vllm"  # generation backend of the GenRM / judge engines
    normalize: bool = False  # p(Yes)/(p(Yes)+p(No)) instead of the paper's raw p(Yes)
    concurrency: int = 1  # engine actors per verifier pass
    batch_size: int = 256  # solutions per map_batches call
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    engine_options: dict[str, Any] = field(default_factory=dict)
    discriminative_batch_size: int = 32  # sequences per classifier forward pass
    # Score a solution repeated within a problem's pool once (its copies share the result): a policy
    # repeats its easy answers verbatim, and each CoT scoring of one costs K rationales.
    dedup: bool = True


@dataclass
class EvalConfig:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    problems: ProblemsConfig = field(default_factory=ProblemsConfig)
    # The policy's solution pools: pool.n solutions per problem (M >= the largest N).
    pool: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=32))
    # GenRM-CoT and the CoT judge vote over cot.k rationales, the largest K of the K curve.
    cot: CotConfig = field(default_factory=CotConfig)
    k_curve: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # GenRM-CoT at K <= cot.k (its first K rationales)
    adaptive_k: bool = True  # also score an adaptive-K pass (cot.min_k / round_size / tolerance) and compare
    scoring: ScoringPassConfig = field(default_factory=ScoringPassConfig)
    ns: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    report_n: int = 16  # the N of the summary table's headline column and of the K / adaptive comparisons
    judge: bool = True  # LLM-as-a-judge (direct) with models.judge (default: the policy)
    judge_cot: bool = True  # LLM-as-a-judge (CoT) with models.judge, K = cot.k
    self_consistency: bool = True
    majority_subsets: int = 200  # random subsets per problem for self-consistency
    # An earlier evaluation's output dir (or its scores.jsonl): rank its solutions (the first pool.n of each
    # problem, graded again) instead of sampling new ones, so verifiers scored in separate runs, or on a
    # subset (fewer problems, a smaller pool), are compared on the same solutions. vLLM's CPU sampling is
    # not reproducible from the seed, so a resampled pool would differ.
    reuse_pool: str = ""
    output_dir: str = ""  # "" = runs/eval-<timestamp>
    ray_address: str = ""  # "" = $RAY_ADDRESS if set, else a local Ray


class EvalInputError(ConfigError):
    """Bad evaluation input found before anything expensive starts."""


def reused_scores_file(path: Path) -> Path:
    """reuse_pool's file: the path itself, or the scores.jsonl inside an evaluation's output dir."""
    return path / "scores.jsonl" if path.is_dir() else path


def check_config(cfg: EvalConfig, models: bool = True) -> None:
    """Everything checkable without Ray or a model; raises EvalInputError naming the key. ``models``:
    also that each model path resolves (off where they do not exist yet: a training job checking the
    evaluation it will run)."""
    if not cfg.models.policy:
        raise EvalInputError("models.policy is required: it samples the pool of solutions")
    try:
        task = get_task(cfg.problems.task, cfg.problems.options)
    except ValueError as e:  # an unknown task (the known ones listed) or a bad generator setting
        raise EvalInputError(f"problems.task / problems.options: {e}") from None
    for split in cfg.problems.splits:
        if split not in task.splits():
            raise EvalInputError(f"problems.splits: task {task.name!r} has no split {split!r} ({list(task.splits())})")
    if not cfg.problems.splits and not cfg.problems.files:
        raise EvalInputError("nothing to evaluate: problems.splits is empty and no --problems file was given")
    for f in cfg.problems.files:
        if not Path(f).is_file():
            raise EvalInputError(f"problems file: no such file {f}")
    if not cfg.ns or any(n < 1 for n in cfg.ns):
        raise EvalInputError(f"ns must be a non-empty list of N >= 1, got {cfg.ns}")
    check_sampling(cfg.pool, "pool")
    if cfg.reuse_pool and not reused_scores_file(Path(cfg.reuse_pool)).is_file():
        raise EvalInputError(f"reuse_pool: {cfg.reuse_pool} is neither a scores.jsonl nor an evaluation's output dir "
                             "holding one")
    if max(cfg.ns) > cfg.pool.n:
        raise EvalInputError(f"ns: N={max(cfg.ns)} exceeds pool.n={cfg.pool.n} (Best-of-N draws N of the pool)")
    if cfg.report_n not in cfg.ns:
        raise EvalInputError(f"report_n={cfg.report_n} must be one of ns={cfg.ns}")
    check_cot(cfg.cot, "cot")
    if cfg.cot.adaptive:
        raise EvalInputError("cot.adaptive: the GenRM-CoT pass votes over a fixed cot.k rationales; adaptive_k: true "
                             "scores an adaptive-K pass beside it")
    if any(not 1 <= k <= cfg.cot.k for k in cfg.k_curve):
        raise EvalInputError(f"k_curve={cfg.k_curve} must lie in [1, cot.k={cfg.cot.k}]")
    if cfg.adaptive_k and not 1 <= cfg.cot.min_k <= cfg.cot.k:
        raise EvalInputError(f"cot.min_k={cfg.cot.min_k} must lie in [1, cot.k={cfg.cot.k}] (adaptive_k)")
    if not models:
        return
    m = cfg.models
    named = [("models.genrm_direct", m.genrm_direct), ("models.genrm_cot", m.genrm_cot),
             ("models.discriminative", m.discriminative)]
    named += [(f"models.extra_direct.{k}", v) for k, v in m.extra_direct.items()]
    named += [(f"models.extra_cot.{k}", v) for k, v in m.extra_cot.items()]
    try:
        resolve_policy_dir(m.policy, "models.policy")
        for key, path in named:
            if path:
                resolve_model_dir(path, key)
        if m.judge and (cfg.judge or cfg.judge_cot):
            resolve_base_model(m.judge, "models.judge")
    except (RunDirError, BaseModelError) as e:
        raise EvalInputError(str(e)) from None
