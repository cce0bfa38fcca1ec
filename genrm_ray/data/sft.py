"""GenRM training sets: D_verify (direct), D_cot and D_correct, as JSONL files with one schema.

Every line of an SFT file is one JSON object:

    {"kind": "verify_direct" | "verify_cot" | "correct",
     "task": "last_letter",            # a name in genrm_ray.tasks (its prompts come from genrm_ray.prompts)
     "problem_id": "...",
     "prompt": "...",                  # model input, built by genrm_ray.prompts
     "target": "...",                  # tokens the loss covers
     "label": true | false | null}     # correctness of the judged solution; null for "correct"

Consistency rules checked on load: a verify_direct target is exactly " Yes" or " No" and agrees with
``label``; a verify_cot target ends with the verdict question and a verdict that agrees with
``label``; a correct record has ``label`` null or true. A bad line raises SFTDataError naming
``file:line`` and the reason.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from genrm_ray import prompts
from genrm_ray.tasks import Problem

KINDS = ("verify_direct", "verify_cot", "correct")


class SFTDataError(ValueError):
    """A malformed SFT record or file."""


@dataclass(frozen=True)
class SFTRecord:
    kind: str
    task: str
    problem_id: str
    prompt: str
    target: str
    label: bool | None


@dataclass(frozen=True)
class LabelledSolution:
    """A candidate solution to a problem with its true grade (from ``Task.is_correct``)."""

    problem: Problem
    solution: str
    correct: bool


T = TypeVar("T")


def balance_labels(
    items: Sequence[T], seed: int = 0, label: Callable[[T], bool] = lambda x: x.correct,
    problem: Callable[[T], str] | None = None, upsample: bool = False,
) -> list[T]:
    """Downsample the larger class so Yes and No are equally frequent (seeded, order shuffled).

    ``upsample``: repeat the smaller class instead (cycled, then a seeded sample for the remainder), so
    every item is kept; on a task with one right answer per problem, downsampling keeps one wrong
    solution per problem and drops most of the policy's own mistakes.

    With ``problem`` (item -> problem id), within every problem: each keeps as many right as wrong
    solutions, and a problem with only one class is dropped. A verifier then cannot score a solution
    by how easy its problem looks, which global balance allows, because easy problems contribute most
    of the right solutions (docs/evaluation.md: within-problem AUROC at chance).
    """
    rng = random.Random(seed)
    groups: dict[str, list[T]] = {}
    for x in items:
        groups.setdefault(problem(x) if problem else "", []).append(x)
    kept: list[T] = []
    for group in groups.values():
        pos = [x for x in group if label(x)]
        neg = [x for x in group if not label(x)]
        if upsample and pos and neg:
            small, large = (pos, neg) if len(pos) < len(neg) else (neg, pos)
            reps, rest = divmod(len(large), len(small))
            kept += large + small * reps + rng.sample(small, rest)
            continue
        n = min(len(pos), len(neg))
        kept += rng.sample(pos, n) + rng.sample(neg, n)
    rng.shuffle(kept)
    return kept


def build_verify_direct(
    items: Sequence[LabelledSolution], balance: bool = True, seed: int = 0, per_problem: bool = False,
    upsample: bool = False,
) -> list[SFTRecord]:
    """D_verify for direct GenRM: (x, y, I) -> " Yes" / " No". ``per_problem``, ``upsample``: how the
    classes are balanced (balance_labels)."""
    by_problem = (lambda x: x.problem.id) if per_problem else None
    chosen = balance_labels(items, seed, problem=by_problem, upsample=upsample) if balance else list(items)
    return [
        SFTRecord(
            kind="verify_direct",
            task=x.problem.task,
            problem_id=x.problem.id,
            prompt=prompts.verify_direct_prompt(x.problem.task, x.problem.question, x.solution),
            target=prompts.verdict_text(x.correct),
            label=x.correct,
        )
        for x in chosen
    ]


@dataclass(frozen=True)
class CotBuildStats:
    offered: int
    kept: int
    rejected_wrong_verdict: int
    rejected_no_verdict: int

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.offered if self.offered else 0.0


def build_verify_cot(
    items: Sequence[LabelledSolution],
    rationale_fn: Callable[[Problem, str], str],
    balance: bool = True,
    seed: int = 0,
    per_problem: bool = False,
    upsample: bool = False,
) -> tuple[list[SFTRecord], CotBuildStats]:
    """D_cot: (x, y, I_cot) -> rationale ending in the verdict question and verdict.

    ``rationale_fn`` is a task's programmatic ``verification_rationale`` or a teacher. As in the
    paper, a rationale is kept only when its verdict matches the true label; the stats say how many
    were dropped and why. Balancing happens after filtering, so the kept set is balanced
    (``per_problem``: within each problem, as balance_labels does).
    """
    kept: list[tuple[LabelledSolution, str]] = []
    wrong = missing = 0
    for x in items:
        rationale = rationale_fn(x.problem, x.solution)
        _, verdict = prompts.split_verdict(rationale)
        if verdict is None:
            missing += 1
        elif verdict != x.correct:
            wrong += 1
        else:
            kept.append((x, rationale))
    by_problem = (lambda pair: pair[0].problem.id) if per_problem else None
    chosen = (balance_labels(kept, seed, label=lambda pair: pair[0].correct, problem=by_problem, upsample=upsample)
              if balance else kept)
    records = [
        SFTRecord(
            kind="verify_cot",
            task=x.problem.task,
            problem_id=x.problem.id,
            prompt=prompts.verify_cot_prompt(x.problem.task, x.problem.question, x.solution),
            target=rationale.strip(),
            label=x.correct,
        )
        for x, rationale in chosen
    ]
    return records, CotBuildStats(len(items), len(records), wrong, missing)


def build_correct(items: Iterable[LabelledSolution]) -> list[SFTRecord]:
    """D_correct: x -> y+ for every correct solution (wrong ones are skipped)."""
    return [
        SFTRecord(
            kind="correct",
            task=x.problem.task,
            problem_id=x.problem.id,
            prompt=prompts.solve_prompt(x.problem.task, x.problem.question),
            target=x.solution.strip(),
            label=None,
        )
        for x in items
        if x.correct
    ]


def write_sft_jsonl(records: Iterable[SFTRecord], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for r in records:
            check_record(r)
            f.write(json.dumps(asdict(r)) + "\n")
    tmp.replace(path)  # never leave a half-written file under the real name
    return path


_FIELD_TYPES = {"kind": str, "task": str, "problem_id": str, "prompt": str, "target": str}


def check_record(r: SFTRecord) -> None:
    """Raise SFTDataError (without location) if a record breaks the schema's consistency rules."""
    if r.kind not in KINDS:
        raise SFTDataError(f"field 'kind' is {r.kind!r}; expected one of {list(KINDS)}")
    if not r.prompt.strip():
        raise SFTDataError("field 'prompt' is empty")
    if not r.target.strip():
        raise SFTDataError("field 'target' is empty")
    if r.kind == "correct":
        if r.label is False:
            raise SFTDataError("a 'correct' record must have label null or true, got false")
        return
    if not isinstance(r.label, bool):
        raise SFTDataError(f"field 'label' must be true or false for kind {r.kind!r}, got {r.label!r}")
    if r.kind == "verify_direct":
        if r.target not in (prompts.YES, prompts.NO):
            raise SFTDataError(f"verify_direct target must be {prompts.YES!r} or {prompts.NO!r}, got {r.target!r}")
        verdict = r.target == prompts.YES
    else:
        _, verdict = prompts.split_verdict(r.target)
        if verdict is None:
            raise SFTDataError(
                f"verify_cot target must end with {prompts.DIRECT_QUESTION!r} followed by "
                f"{prompts.YES!r} or {prompts.NO!r}"
            )
    if verdict != r.label:
        raise SFTDataError(f"target verdict ({'Yes' if verdict else 'No'}) disagrees with label {r.label}")


def parse_record(obj: object) -> SFTRecord:
    if not isinstance(obj, dict):
        raise SFTDataError(f"expected a JSON object, got {type(obj).__name__}")
    for name, typ in _FIELD_TYPES.items():
        if name not in obj:
            raise SFTDataError(f"missing field {name!r}")
        if not isinstance(obj[name], typ):
            raise SFTDataError(f"field {name!r} must be a string, got {type(obj[name]).__name__}")
    if "label" not in obj:
        raise SFTDataError("missing field 'label' (use null for 'correct' records)")
    label = obj["label"]
    if label is not None and not isinstance(label, bool):
        raise SFTDataError(f"field 'label' must be true, false or null, got {label!r}")
    unknown = set(obj) - set(_FIELD_TYPES) - {"label"}
    if unknown:
        raise SFTDataError(f"unknown field(s) {sorted(unknown)}")
    record = SFTRecord(label=label, **{k: obj[k] for k in _FIELD_TYPES})
    check_record(record)
    return record


def load_sft_jsonl(path: str | Path, kinds: Sequence[str] | None = None) -> list[SFTRecord]:
    """Read and validate an SFT file; ``kinds`` restricts which record kinds are allowed."""
    path = Path(path)
    if not path.is_file():
        raise SFTDataError(f"{path}: no such file")
    records = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = parse_record(json.loads(line))
            except json.JSONDecodeError as e:
                raise SFTDataError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            except SFTDataError as e:
                raise SFTDataError(f"{path}:{lineno}: {e}") from None
            if kinds is not None and record.kind not in kinds:
                raise SFTDataError(f"{path}:{lineno}: kind {record.kind!r} not allowed here; expected {list(kinds)}")
            records.append(record)
    if not records:
        raise SFTDataError(f"{path}: no records")
    return records
