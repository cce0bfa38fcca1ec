"""Why a GenRM-CoT ranks as it does: its sampled rationales read line by line against the task's
programmatic rationale for the same solution (the checks a perfect verifier would write).

A rationale's check line is ``Step i: the solution says CLAIM; RECOMPUTED. Correct.`` (or ``Wrong.``,
or ``the solution skips ...``); the ``Final answer`` line has the same shape. For each line present in
both rationales:

- recomputed_agrees: the value the line ends on (last number, or last quoted string) is the
  programmatic line's: did the verifier redo the step right?
- verdict_agrees: its Correct/Wrong is the programmatic one: did it judge the step right?
- verdict_follows_own_values: its Correct/Wrong is what its own claim and recomputed values say
  (equal -> Correct): does its verdict follow its own work, right or wrong?
- on the check lines (final answer included) whose claim is wrong (the programmatic recomputation differs from it):
  wrong_claim_recomputed, the share where the verifier reached the true value, and
  wrong_claim_copied, the share where it wrote the solution's wrong value back as its own.

Per rationale: flags_wrong_solution / flags_right_solution, the share that has a Wrong line on wrong
and on right solutions; verdict_follows_final_line, the share whose p(Yes) > 0.5 exactly when its
Final answer line says Correct (the programmatic rule).

Low recomputed_agrees with high verdict_follows_own_values means its arithmetic is the bottleneck;
the reverse means it does the work and then ignores it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrm_ray.tasks import Task
from genrm_ray.tasks.base import CORRECT, WRONG

if TYPE_CHECKING:
    from genrm_ray.evaluation.pools import PoolProblem

_STEP = re.compile(rf"^(?P<label>Step \d+(?: \(extra\))?|Final answer): the solution (?P<kind>says|skips) (?P<claim>.*?); "
                   rf"(?P<recomputed>.*) (?P<verdict>{re.escape(CORRECT)}|{re.escape(WRONG)})$")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _value(text: str) -> str | None:
    """What a check-line half ends on: its last quoted string, else the last number after its last "="."""
    quoted = re.findall(r'"([^"]*)"', text)
    if quoted:
        return quoted[-1]
    numbers = _NUMBER.findall(text.rpartition("=")[2] or text)
    return numbers[-1].replace(",", "") if numbers else None


def step_lines(rationale: str) -> dict[str, dict[str, Any]]:
    """The check lines of a rationale by label (``Step 2``, ``Final answer``): kind (says/skips), claim
    and recomputed values, verdict."""
    out = {}
    for line in rationale.split("\n"):
        m = _STEP.match(line.strip())
        if m and m["label"] not in out:
            out[m["label"]] = {"kind": m["kind"], "claim": _value(m["claim"]) if m["kind"] == "says" else None,
                               "recomputed": _value(m["recomputed"]), "correct": m["verdict"] == CORRECT}
    return out


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def diagnose_rationales(task: Task, pool: Sequence[PoolProblem], name: str) -> dict[str, Any] | None:
    """The shares above over every distinct solution of ``pool`` that verifier ``name`` wrote rationales
    for; None when the task has no programmatic rationale."""
    counts = dict.fromkeys(["lines", "recomputed_agrees", "verdict_agrees", "own_lines", "verdict_follows_own_values",
                            "rationales_wrong", "flags_wrong", "rationales_right", "flags_right", "judged",
                            "verdict_follows_final_line", "wrong_claims", "wrong_claim_recomputed",
                            "wrong_claim_copied"], 0)
    for pp in pool:
        seen: set[str] = set()
        for solution, correct, texts, p_yes in zip(pp.solutions, pp.correct, pp.rationales[name], pp.p_yes[name]):
            if solution in seen:  # copies share their rationales (scoring.dedup)
                continue
            seen.add(solution)
            try:
                truth = step_lines(task.verification_rationale(pp.problem, solution))
            except NotImplementedError:
                return None
            for text, p in zip(texts, p_yes):
                lines = step_lines(text)
                for label, line in lines.items():
                    if line["kind"] == "says" and line["claim"] is not None and line["recomputed"] is not None:
                        counts["own_lines"] += 1
                        counts["verdict_follows_own_values"] += line["correct"] == (line["claim"] == line["recomputed"])
                    if label in truth:
                        counts["lines"] += 1
                        counts["recomputed_agrees"] += line["recomputed"] == truth[label]["recomputed"]
                        counts["verdict_agrees"] += line["correct"] == truth[label]["correct"]
                        want = truth[label]
                        if want["kind"] == line["kind"] == "says" and want["claim"] != want["recomputed"]:
                            counts["wrong_claims"] += 1
                            counts["wrong_claim_recomputed"] += line["recomputed"] == want["recomputed"]
                            counts["wrong_claim_copied"] += line["recomputed"] == want["claim"]
                flagged = any(not line["correct"] for line in lines.values())
                counts["rationales_right" if correct else "rationales_wrong"] += 1
                counts["flags_right" if correct else "flags_wrong"] += flagged
                final = lines.get("Final answer")
                if final is not None and text.rstrip().endswith("?"):  # reached the question (not cut)
                    counts["judged"] += 1
                    counts["verdict_follows_final_line"] += (p > 0.5) == final["correct"]
    c = counts
    return {
        "step_lines": c["lines"],
        "recomputed_agrees": _share(c["recomputed_agrees"], c["lines"]),
        "verdict_agrees": _share(c["verdict_agrees"], c["lines"]),
        "verdict_follows_own_values": _share(c["verdict_follows_own_values"], c["own_lines"]),
        "wrong_claim_lines": c["wrong_claims"],
        "wrong_claim_recomputed": _share(c["wrong_claim_recomputed"], c["wrong_claims"]),
        "wrong_claim_copied": _share(c["wrong_claim_copied"], c["wrong_claims"]),
        "flags_wrong_solution": _share(c["flags_wrong"], c["rationales_wrong"]),
        "flags_right_solution": _share(c["flags_right"], c["rationales_right"]),
        "verdict_follows_final_line": _share(c["verdict_follows_final_line"], c["judged"]),
        "rationales": c["rationales_wrong"] + c["rationales_right"],
    }


def diagnose_scores_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """The diagnosis of every CoT verifier in an earlier evaluation's scores.jsonl (or output dir),
    per problem set; the problems are regenerated from its eval_config.json."""
    from genrm_ray.evaluation.pools import PoolProblem
    from genrm_ray.tasks import get_task

    path = Path(path)
    folder, scores = (path, path / "scores.jsonl") if path.is_dir() else (path.parent, path)
    config = json.loads((folder / "eval_config.json").read_text())["problems"]
    task = get_task(config["task"], config.get("options"))
    problems = {p.id: p for split in config["splits"]
                for p in task.generate(split, config["n_ood"] if split == "ood" else config["n"], seed=config["seed"])}
    pools: dict[str, dict[str, PoolProblem]] = {}
    for line in scores.read_text().splitlines():
        r = json.loads(line)
        if r["problem_id"] not in problems:
            continue  # problem files are not regenerated
        pool = pools.setdefault(r["set"], {})
        pp = pool.setdefault(r["problem_id"], PoolProblem(problems[r["problem_id"]], [], [], []))
        pp.solutions.append(r["solution"])
        pp.correct.append(r["correct"])
        for name, cot in r["rationales"].items():
            pp.rationales.setdefault(name, []).append(cot["texts"])
            # Files written before p_yes was kept per rationale: a placeholder, and no verdict share.
            pp.p_yes.setdefault(name, []).append(cot.get("p_yes") or [math.nan] * len(cot["texts"]))
    out = {}
    for set_name, pool in pools.items():
        out[set_name] = {}
        for name in next(iter(pool.values())).rationales:
            d = diagnose_rationales(task, list(pool.values()), name)
            if d is not None and any(math.isnan(p) for pp in pool.values() for ps in pp.p_yes[name] for p in ps):
                d["verdict_follows_final_line"] = None
            out[set_name][name] = d
    return out


def _by_label(lines: Sequence[str]) -> dict[str, str]:
    """Check lines by their label (the text before the first ":"), the first of each label."""
    out: dict[str, str] = {}
    for line in lines:
        label, sep, _ = line.strip().partition(":")
        if sep and label not in out:
            out[label] = line.strip()
    return out


def line_agreement(task: Task, pairs: Sequence[tuple[str, str, Sequence[str]]],
                   rationale_format: str = "quoted") -> dict[str, Any] | None:
    """How often a verifier's rationale lines equal the programmatic ones, for tasks whose rationales are
    ``task.check_lines`` (reasoning-gym tasks): over ``(question, solution, rationales)``, the share of
    programmatic lines that the rationale writes word for word under the same label, overall and by
    the label's kind (``Row``, ``Column``, ``Box``, ``Step``, ...), and the share of lines whose
    Correct/Wrong agrees; against the lines in ``rationale_format``, the one the verifier was trained
    on. None when the task has no such rationale."""
    if not hasattr(task, "check_lines"):
        return None
    counts: dict[str, list[int]] = {}  # kind -> [lines, exact, verdict agrees]
    for question, solution, rationales in pairs:
        try:
            truth = _by_label(task.check_lines(question, solution, rationale_format))
        except NotImplementedError:
            return None
        for text in rationales:
            written = _by_label(text.split("\n"))
            for label, want in truth.items():
                c = counts.setdefault(label.split(" ")[0], [0, 0, 0])
                got = written.get(label, "")
                c[0] += 1
                c[1] += got == want
                c[2] += bool(got) and got.endswith(WRONG) == want.endswith(WRONG)
    if not counts:
        return None
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {"lines": total[0], "exact": _share(total[1], total[0]), "verdict_agrees": _share(total[2], total[0]),
            "by_kind": {k: {"lines": c[0], "exact": _share(c[1], c[0]), "verdict_agrees": _share(c[2], c[0])}
                        for k, c in sorted(counts.items())}}


if __name__ == "__main__":  # python -m genrm_ray.evaluation.rationales <eval output_dir>
    import sys

    print(json.dumps(diagnose_scores_file(sys.argv[1]), indent=2))
