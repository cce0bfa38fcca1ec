"""TaskConfig: which problems a job works on (the ``task`` section of the training, data and GRPO
configs), and ``load_problems``, the one place that turns it into train and held-out problems.

    train, heldout = load_problems(TaskConfig(name="mini_sudoku", options={"max_empty": 6}, n_train=160))
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrm_ray.config import ConfigError
from genrm_ray.tasks import Problem, Task, get_task


@dataclass
class TaskConfig:
    name: str = ""  # a built-in task or any reasoning-gym dataset (genrm_ray.tasks.get_task)
    # Generator settings of a reasoning-gym task (its dataset config's fields, e.g. min_empty / max_empty
    # for mini_sudoku); {} = the task's defaults. Built-in tasks take none.
    options: dict[str, Any] = field(default_factory=dict)
    n_train: int = 400  # train-split problems (SFT and D_verify; GRPO's prompts)
    n_heldout: int = 100  # held-out problems (the verification set; GRPO's pass@1)
    heldout_split: str = "validation"  # or "ood" where the task has it; never "test": it stays for Best-of-N
    seed: int = 0
    # A JSONL of real problems in the task's file format (GSM8K's question/answer rows for gsm8k). Set:
    # train and held-out problems are drawn from it instead of generated, disjoint (a seeded shuffle:
    # the first n_train, then the next n_heldout). "" = generate (gsm8k has no generator).
    file: str = ""


def cache_fields(task: dict[str, Any]) -> dict[str, Any]:
    """A task section (as ``to_dict`` gives it) as cache keys hash it: a problems file enters by its
    content (a moved copy keeps the folder); settings added later are dropped at their defaults, so
    folders built before they existed keep their keys."""
    task = dict(task)
    if not task.get("options"):
        task.pop("options", None)
    if task.get("heldout_split", "validation") == "validation":
        task.pop("heldout_split", None)
    path = task.pop("file", "")
    if path:
        task["file_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).is_file() else path
    return task


def check_task(cfg: TaskConfig, key: str = "task") -> Task:
    """The task, once its name, options, sizes and held-out split are valid; ConfigError names the key."""
    try:
        task = get_task(cfg.name, cfg.options)
    except ValueError as e:  # an unknown task (the known ones listed) or a bad generator setting
        raise ConfigError(f"{key}: {e}") from None
    for name, value in (("n_train", cfg.n_train), ("n_heldout", cfg.n_heldout)):
        if value < 0:
            raise ConfigError(f"{key}.{name} must be >= 0, got {value}")
    if cfg.heldout_split == "test":
        raise ConfigError(f"{key}.heldout_split=test is reserved for Best-of-N; use validation (or ood)")
    if cfg.heldout_split not in task.splits():
        raise ConfigError(f"{key}.heldout_split: task {task.name!r} has no split {cfg.heldout_split!r} "
                          f"({list(task.splits())})")
    return task


def load_problems(cfg: TaskConfig, key: str = "task") -> tuple[list[Problem], list[Problem]]:
    """(train, held-out) problems: generated from the task's train and held-out splits, or drawn
    disjointly from ``cfg.file``. ConfigError names the key (and the file's line for a bad row)."""
    task = check_task(cfg, key)
    if not cfg.file:
        try:
            return (task.generate("train", cfg.n_train, seed=cfg.seed),
                    task.generate(cfg.heldout_split, cfg.n_heldout, seed=cfg.seed))
        except NotImplementedError:
            raise ConfigError(f"{key}.file: task {cfg.name!r} has no generator; name a JSONL of its problems "
                              "(GSM8K format: question / answer rows)") from None
    path = Path(cfg.file)
    if not path.is_file():
        raise ConfigError(f"{key}.file: no such file {path}")
    try:
        loaded = task.load(path)
    except ValueError as e:  # names file:line and the field
        raise ConfigError(f"{key}.file: {e}") from None
    problems = list({p.id: p for p in loaded}.values())  # a repeated question counts once
    want = cfg.n_train + cfg.n_heldout
    if len(problems) < want:
        raise ConfigError(f"{key}: {path} holds {len(problems)} distinct problems, fewer than "
                          f"n_train + n_heldout = {cfg.n_train} + {cfg.n_heldout}")
    random.Random(cfg.seed).shuffle(problems)
    return problems[: cfg.n_train], problems[cfg.n_train : want]
