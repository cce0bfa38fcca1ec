"""Tasks: one registry, ``get_task(name)`` -> Task. Task definitions live only in this package."""

from genrm_ray.tasks.arithmetic import ArithmeticTask
from genrm_ray.tasks.base import OOD, SPLITS, Candidate, Problem, Task, split_of
from genrm_ray.tasks.gsm8k import GSM8KTask
from genrm_ray.tasks.last_letter import LastLetterTask
from genrm_ray.tasks.word_sort import WordSortTask

TASKS: dict[str, Task] = {t.name: t for t in (LastLetterTask(), WordSortTask(), ArithmeticTask(), GSM8KTask())}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


__all__ = ["OOD", "SPLITS", "TASKS", "Candidate", "Problem", "Task", "get_task", "split_of"]
