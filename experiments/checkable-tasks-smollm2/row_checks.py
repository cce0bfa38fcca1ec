#!/usr/bin/env python
"""Where a mini_sudoku GenRM-CoT's row lines go wrong, from a run's held-out rationales:

    python experiments/checkable-tasks-smollm2/row_checks.py runs/select-sudoku-e46 [RATIONALES_JSONL]

Counts, over every sampled rationale, the row lines whose cells part and puzzle part equal the
programmatic ones, and how many of the rows with a changed given the rationale flags (and how many it
flags wrongly). The rationales default to the run's heldout_rationales.jsonl; the format is the run's
data.rationale_format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from genrm_ray import prompts  # noqa: E402
from genrm_ray.data.sft import load_sft_jsonl  # noqa: E402
from genrm_ray.tasks import get_task  # noqa: E402


def main() -> int:
    run = Path(sys.argv[1])
    rationales = Path(sys.argv[2]) if len(sys.argv) > 2 else run / "heldout_rationales.jsonl"
    folder = Path(json.loads((run / "summary.json").read_text())["data"]["folder"])
    build = json.loads((folder / "build_config.json").read_text())
    task = get_task(build["task"]["name"], build["task"].get("options"))
    fmt = build.get("rationale_format", "quoted")
    records = load_sft_jsonl(folder / "heldout.jsonl", kinds=["verify_direct"])
    counts = dict.fromkeys(["row_lines", "cells_exact", "puzzle_exact", "changed_rows", "changed_flagged",
                            "flagged_wrongly"], 0)
    for record, line in zip(records, rationales.read_text().splitlines()):
        question, solution = prompts.parse_verify_direct_prompt(record.task, record.prompt)
        truth = [t for t in task.check_lines(question, solution, fmt) if t.startswith("Row")]
        for text in json.loads(line)["rationales"]:
            written = {w.split(":")[0]: w for w in text.split("\n")}
            for want in truth:
                got = written.get(want.split(":")[0], "")
                w, g = want.rstrip(".").split(";"), got.rstrip(".").split(";")
                counts["row_lines"] += 1
                counts["cells_exact"] += w[0] == g[0]
                counts["puzzle_exact"] += len(g) > 1 and w[1] == g[1]
                changed = "changed" in want
                counts["changed_rows"] += changed
                counts["changed_flagged"] += changed and "changed" in got
                counts["flagged_wrongly"] += not changed and "changed" in got
    print(json.dumps({"run": str(run), "rationales": str(rationales), "rationale_format": fmt, **counts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
