"""Tasks: one registry, ``get_task(name, options)`` -> Task. Task definitions live only in this package.

Built-in tasks are generated here; ``mini_sudoku``, ``countdown`` and every other reasoning-gym dataset
come from reasoning-gym (genrm_ray.tasks.gym), with their generator settings as ``options``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from genrm_ray.tasks.arithmetic import ArithmeticTask
from genrm_ray.tasks.base import OOD, SPLITS, Candidate, Problem, Task, split_of
from genrm_ray.tasks.gsm8k import GSM8KTask
from genrm_ray.tasks.last_letter import LastLetterTask
from genrm_ray.tasks.word_sort import WordSortTask

TASKS: dict[str, Task] = {t.name: t for t in (LastLetterTask(), WordSortTask(), ArithmeticTask(), GSM8KTask())}
# reasoning-gym datasets with step-checking rationales of their own (the rest get the generic wrapper).
_GYM_TASKS = {"mini_sudoku": "genrm_ray.tasks.sudoku:MiniSudokuTask", "countdown": "genrm_ray.tasks.countdown:CountdownTask"}
_GYM_CACHE: dict[tuple[str, str], Task] = {}


def get_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The task ``name``: a built-in one (no options), or a reasoning-gym dataset with generator
    settings ``options``. ValueError names an unknown task or a bad setting."""
    if name in TASKS:
        if options:
            raise ValueError(f"task {name!r} takes no options (got {dict(options)}); only reasoning-gym tasks do")
        return TASKS[name]
    key = (name, json.dumps(dict(options or {}), sort_keys=True, default=list))
    if key not in _GYM_CACHE:
        try:
            from genrm_ray.tasks.gym import ReasoningGymTask, dataset_names
        except ImportError:  # reasoning-gym not installed
            dataset_names = None
        if dataset_names is None or name not in dataset_names():
            raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}, and any reasoning-gym "
                             "dataset (e.g. mini_sudoku, countdown; genrm_ray.tasks.gym.dataset_names())") from None
        if name in _GYM_TASKS:
            import importlib

            module, cls = _GYM_TASKS[name].split(":")
            _GYM_CACHE[key] = getattr(importlib.import_module(module), cls)(options)
        else:
            _GYM_CACHE[key] = ReasoningGymTask(name, options)
    return _GYM_CACHE[key]


__all__ = ["OOD", "SPLITS", "TASKS", "Candidate", "Problem", "Task", "get_task", "split_of"]
