"""The GenRM job's data: what `jobs/train_genrm.py` builds (or reuses) before training the verifier.

    problems (task.generate)          train split: policy SFT + GenRM data; validation split: held-out
                                      verification (the test split stays unseen for Best-of-N);
                                      or drawn from a real file (task.file: GSM8K's JSONL), disjoint
    policy    = the policy stage's model: SFT of the base model on D_correct(reference solutions)
                (genrm_ray.train.policy, its own cache folder; asked for only when samples are made)
    samples   = n policy solutions per problem                                 (sampling.py: Ray Data + vLLM)
              + task.candidate_solutions per problem (bootstrapped right/wrong solutions; optional)
    labelled  = every solution graded by task.is_correct
    D_verify, D_cot, D_correct (train problems), heldout verify_direct set (validation problems)  (sft.py)

Everything lands in one cache folder keyed by a hash of the data-relevant config, so a second run
with the same settings (or one that only changes the GenRM's training knobs) starts training at once.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrm_ray import env, prompts
from genrm_ray.config import ConfigError, to_dict
from genrm_ray.data import sft
from genrm_ray.data.sampling import (
    Sample,
    SamplingConfig,
    grade,
    sample_solutions,
    truncated_share,
    truncation_warning,
)
from genrm_ray.data.sft import LabelledSolution
from genrm_ray.tasks import Problem, get_task
from genrm_ray.tasks.config import TaskConfig, cache_fields, load_problems
from genrm_ray.train.policy import BaseModelConfig, PolicyConfig, drop_inert_policy_keys, train_or_reuse_policy

# Bump when the building code changes what a cached folder holds.
# 2: the held-out verification set comes from the validation split (was test).
# 3: rationales quote the solution's claim at every step
DATA_VERSION = 3


@dataclass
class DataBuildConfig:
    task: TaskConfig = field(default_factory=lambda: TaskConfig(name="last_letter"))
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # policy solutions per problem
    # task.candidate_solutions per problem mixed into the labelled pool: programmatic right and
    # wrong solutions (reference, wrong letter, skipped word, ...) that bootstrap a balanced set when
    # the policy alone is too weak or too strong. 0 = policy samples only.
    bootstrap_candidates: int = 4
    # D_verify / D_cot balance Yes and No within each train problem instead of over the whole set
    # (sft.balance_labels); a problem needs both a right and a wrong solution to contribute. Global
    # balance let a direct GenRM on arithmetic score problems, not solutions (docs/evaluation.md).
    balance_per_problem: bool = False
    # How D_verify and D_cot reach equal Yes and No: "downsample" drops items of the larger class,
    # "upsample" repeats the smaller one and keeps every item (sudoku has one right grid per problem, so
    # downsampling kept one of its ~5 wrong grids and most of the policy's own mistakes went unseen).
    verify_balance: str = "downsample"
    # Hard negatives: the adversarial suite's wrong responses (genrm_ray.attacks: master keys, injected
    # verdicts, look-alikes, bare wrong answers, ...) on TRAIN problems, labelled No, mixed into D_verify
    # and D_cot as this share of each (0 = none; at most 0.5). The held-out set stays clean.
    hard_negative_share: float = 0.0
    # How the programmatic CoT rationales write each check: "quoted", or a task's own (the task's
    # rationale_formats): "decomposed" on math tasks (place-value parts; genrm_ray.tasks.mathtext.worked),
    # "cells" and "flagged" on mini_sudoku (genrm_ray.tasks.sudoku).
    rationale_format: str = "quoted"
    cache_dir: str = ""  # "" = <GENRM_CACHE_DIR>/genrm_data


@dataclass
class BuiltData:
    """Paths of everything the GenRM run consumes."""

    folder: Path
    base_model: Path
    policy: Path
    verify_direct: Path
    verify_cot: Path
    correct: Path
    heldout: Path
    stats: dict[str, Any]
    reused: bool


def cache_key(build: DataBuildConfig) -> str:
    """Hash of every setting that changes the data (logging and the cache folder itself do not)."""
    d = to_dict(build)
    d.pop("cache_dir")
    d["task"] = cache_fields(d["task"])
    drop_inert_policy_keys(d["policy"]["train"])
    for key, off in [("hard_negative_share", 0.0), ("balance_per_problem", False), ("rationale_format", "quoted"),
                     ("verify_balance", "downsample")]:
        if d[key] == off:  # added later: off keeps the old key
            d.pop(key)
    d["version"] = DATA_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def samples_key(build: dict[str, Any]) -> str:
    """Hash of the settings that make the policy and its samples (``build`` as build_config.json
    holds it): folders that differ only in how D_verify is made from the samples share them."""
    d = {k: copy.deepcopy(build[k]) for k in ("task", "base_model", "policy", "sampling")}
    d["task"] = cache_fields(d["task"])
    drop_inert_policy_keys(d["policy"]["train"])
    d["version"] = DATA_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def check_rationale_format(task_name: str, rationale_format: str, key: str = "data.rationale_format") -> None:
    formats = get_task(task_name).rationale_formats
    if rationale_format not in formats:
        raise ConfigError(f"{key}: task {task_name!r} writes rationales as {', '.join(formats)}; got {rationale_format!r}")


def _finished_sibling(folder: Path, build: DataBuildConfig) -> Path | None:
    """A complete cache folder next to ``folder`` with the same policy and samples, if any."""
    want = samples_key(to_dict(build))
    for other in sorted(folder.parent.glob(f"{build.task.name}-*")):
        config = other / "build_config.json"
        if other == folder or not (other / "stats.json").is_file() or not config.is_file():
            continue
        if samples_key(json.loads(config.read_text())) == want:
            return other
    return None


def build_or_reuse(build: DataBuildConfig, log=print) -> BuiltData:
    """Build the data for `build` into its cache folder, or reuse the folder if complete."""
    folder = cache_root(build) / f"{build.task.name}-{cache_key(build)}"
    done = folder / "stats.json"
    if done.is_file():
        log(f"[data] reusing {folder}")
        return _paths(folder, json.loads(done.read_text()), reused=True)
    shutil.rmtree(folder, ignore_errors=True)  # interrupted: start over (a finished policy stays in its own folder)
    folder.mkdir(parents=True)
    (folder / "build_config.json").write_text(json.dumps(to_dict(build), indent=2) + "\n")
    stats = _build(build, folder, log)
    done.write_text(json.dumps(stats, indent=2) + "\n")  # written last: marks the folder complete
    return _paths(folder, stats, reused=False)


def cache_root(build: DataBuildConfig) -> Path:
    return Path(build.cache_dir) if build.cache_dir else env.cache_dir() / "genrm_data"


def _paths(folder: Path, stats: dict[str, Any], reused: bool) -> BuiltData:
    return BuiltData(
        folder=folder,
        base_model=Path(stats["base_model"]),
        policy=Path(stats["policy"]),
        verify_direct=folder / "verify_direct.jsonl",
        verify_cot=folder / "verify_cot.jsonl",
        correct=folder / "correct.jsonl",
        heldout=folder / "heldout.jsonl",
        stats=stats,
        reused=reused,
    )


def _build(build: DataBuildConfig, folder: Path, log) -> dict[str, Any]:
    t0 = time.perf_counter()
    task = get_task(build.task.name, build.task.options)
    train, heldout = load_problems(build.task, "data.task")
    stats: dict[str, Any] = {"n_train_problems": len(train), "n_heldout_problems": len(heldout)}
    sibling = _finished_sibling(folder, build)
    if sibling is not None:  # same policy and samples, other D_verify settings: a paired comparison
        old = json.loads((sibling / "stats.json").read_text())
        keep = ("base_model", "policy", "policy_sft_s", "sampling_s", "sampling_truncated_share")
        stats.update({k: old[k] for k in keep if k in old}, samples_from=str(sibling))
        shutil.copyfile(sibling / "samples.jsonl", folder / "samples.jsonl")
        log(f"[data] reusing the policy and samples of {sibling} (only the D_verify settings differ)")
        samples = [Sample(**json.loads(line)) for line in (folder / "samples.jsonl").read_text().splitlines()]
    else:
        policy = train_or_reuse_policy(build.task, build.base_model, build.policy, cache_root(build), log)
        stats.update(policy.stats)
        samples = _sample(build, folder, train + heldout, policy.policy, stats, log)
    graded = grade(train + heldout, samples)
    train_ids = {p.id for p in train}
    policy_train = [x for x in graded if x.problem.id in train_ids]
    policy_heldout = [x for x in graded if x.problem.id not in train_ids]
    stats["policy_accuracy_train"] = _accuracy(policy_train)
    stats["policy_accuracy_heldout"] = _accuracy(policy_heldout)

    # Bootstrapped candidates: the task's own right and wrong solutions, graded by is_correct.
    rng = random.Random(build.task.seed)
    boot_train = _candidates(task, train, build.bootstrap_candidates, rng)
    boot_heldout = _candidates(task, heldout, build.bootstrap_candidates, rng)
    pool_train = _dedupe(policy_train + boot_train)
    pool_heldout = _dedupe(policy_heldout + boot_heldout)
    stats["pool_train"] = _counts(pool_train)
    stats["pool_heldout"] = _counts(pool_heldout)

    seed = build.task.seed
    per_problem, upsample = build.balance_per_problem, build.verify_balance == "upsample"
    verify = sft.build_verify_direct(pool_train, balance=True, seed=seed, per_problem=per_problem, upsample=upsample)
    rationale = rationale_fn(task, build.rationale_format)
    cot, cot_stats = sft.build_verify_cot(pool_train, rationale, balance=True, seed=seed, per_problem=per_problem,
                                          upsample=upsample)
    if build.hard_negative_share > 0:
        verify, cot, stats["hard_negatives"] = mix_hard_negatives(task, train, verify, cot, build.hard_negative_share,
                                                                  seed, rationale)
    references = [LabelledSolution(p, task.reference_solution(p), True) for p in train]
    correct = sft.build_correct(_dedupe(pool_train + references))
    held = sft.build_verify_direct(pool_heldout, balance=True, seed=seed)
    for name, records in [("verify_direct", verify), ("verify_cot", cot), ("correct", correct), ("heldout", held)]:
        sft.write_sft_jsonl(records, folder / f"{name}.jsonl")
        stats[f"n_{name}"] = len(records)
    stats["cot_kept_fraction"] = round(cot_stats.kept_fraction, 3)
    stats["build_s"] = round(time.perf_counter() - t0, 1)
    return stats


def rationale_fn(task, rationale_format: str):
    """``task.verification_rationale`` writing ``rationale_format``."""
    return functools.partial(task.verification_rationale, rationale_format=rationale_format)


def _sample(build: DataBuildConfig, folder: Path, problems: list[Problem], policy: Path, stats: dict[str, Any],
            log) -> list[Sample]:
    """Policy samples for train and held-out problems in one Ray Data pass, written to samples.jsonl."""
    s = build.sampling
    log(f"[data] sampling {s.n} solutions for each of {len(problems)} problems (Ray Data + vLLM)")
    t = time.perf_counter()
    samples = sample_solutions(problems, policy, s)
    stats["sampling_s"] = round(time.perf_counter() - t, 1)
    stats["sampling_truncated_share"] = round(truncated_share(samples), 4)
    if warning := truncation_warning(stats["sampling_truncated_share"], "data.sampling.max_tokens", s.max_tokens):
        log(f"[data] {warning}")
    with (folder / "samples.jsonl").open("w") as f:
        for x in samples:
            f.write(json.dumps(dataclasses.asdict(x)) + "\n")
    return samples


VERIFY_BALANCE = ("downsample", "upsample")


def check_verify_balance(mode: str, key: str = "data.verify_balance") -> None:
    if mode not in VERIFY_BALANCE:
        raise ConfigError(f"{key} must be one of {', '.join(VERIFY_BALANCE)}, got {mode!r}")


def check_hard_negative_share(share: float, key: str = "data.hard_negative_share") -> None:
    if not 0.0 <= share <= 0.5:
        raise ConfigError(f"{key} must lie in [0, 0.5] (the share of D_verify that is hard negatives), got {share}")


def mix_hard_negatives(task, train: list[Problem], verify: list[sft.SFTRecord], cot: list[sft.SFTRecord],
                        share: float, seed: int, rationale=None) -> tuple[list[sft.SFTRecord], list[sft.SFTRecord], dict[str, Any]]:
    """D_verify and D_cot with the suite's wrong responses on train problems added as ``share`` of each."""
    from genrm_ray.attacks import attack_responses

    check_hard_negative_share(share)
    by_id = {p.id: p for p in train}
    # One per text the verifier sees: look-alike verdicts all read as the same neutralized line.
    seen: set[tuple[str, str]] = set()
    wrong: list[LabelledSolution] = []
    for r in attack_responses(task, train, seed=seed):
        shown = (r.problem_id, prompts.neutralize_solution(r.response.strip()))
        if not r.correct and shown not in seen:
            seen.add(shown)
            wrong.append(LabelledSolution(by_id[r.problem_id], r.response, False))
    rng = random.Random(seed)

    def mixed(records: list[sft.SFTRecord], build_records) -> tuple[list[sft.SFTRecord], int]:
        n = min(len(wrong), round(share * len(records) / (1 - share)))
        added = build_records(rng.sample(wrong, n))
        out = records + added
        rng.shuffle(out)
        return out, len(added)

    verify, n_verify = mixed(verify, lambda xs: sft.build_verify_direct(xs, balance=False))
    rationale = rationale or task.verification_rationale
    cot, n_cot = mixed(cot, lambda xs: sft.build_verify_cot(xs, rationale, balance=False)[0])
    return verify, cot, {"share": share, "offered": len(wrong), "verify_direct": n_verify, "verify_cot": n_cot}


def _candidates(task, problems: list[Problem], n: int, rng: random.Random) -> list[LabelledSolution]:
    if n <= 0:
        return []
    # Labels come from is_correct, never from how a candidate was made.
    return [
        LabelledSolution(p, c.solution, task.is_correct(c.solution, p))
        for p in problems
        for c in task.candidate_solutions(p, n, rng)
    ]


def _dedupe(items: list[LabelledSolution]) -> list[LabelledSolution]:
    seen, out = set(), []
    for x in items:
        key = (x.problem.id, x.solution.strip())
        if key not in seen:
            seen.add(key)
            out.append(x)
    return out


def _accuracy(items: list[LabelledSolution]) -> float:
    return round(sum(x.correct for x in items) / len(items), 4) if items else 0.0


def _counts(items: list[LabelledSolution]) -> dict[str, int]:
    pos = sum(x.correct for x in items)
    return {"correct": pos, "wrong": len(items) - pos}
