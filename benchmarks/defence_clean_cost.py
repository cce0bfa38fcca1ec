#!/usr/bin/env python
"""What the prompt's defence changes in clean solutions: how many of a policy's samples
``prompts.neutralize_solution`` rewrites.

    python benchmarks/defence_clean_cost.py .cache/genrm_data/<folder>/samples.jsonl [...] --out JSON

Issue 14 asks that the defences leave clean Best-of-N within 1 point. Every verifier prompt shows
the solution through ``neutralize_solution``; a sample it leaves as written gets the same prompt, and
so the same reward, defended or not. When it rewrites none of a policy's samples, the defence moves
no clean Best-of-N pick of that policy. Reads JSONL records with a ``solution`` field (data build
samples, evaluation pools); writes the counts, a few rewritten examples and the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genrm_ray.prompts import neutralize_solution  # noqa: E402


def count_rewritten(path: Path) -> dict:
    n, rewritten, examples = 0, 0, []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            solution = json.loads(line)["solution"].strip()
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise SystemExit(f"{path}:{i}: not a JSON record with a string 'solution' field") from None
        n += 1
        shown = neutralize_solution(solution)
        if shown != solution:
            rewritten += 1
            if len(examples) < 5:
                examples.append({"line": i, "solution": solution, "shown": shown})
    return {"samples": n, "rewritten": rewritten, "share": rewritten / n if n else 0.0, "examples": examples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "defence_clean_cost.json")
    args = ap.parse_args()
    for p in args.samples:
        if not p.is_file():
            raise SystemExit(f"no such file: {p}")
    files = {str(p): count_rewritten(p) for p in args.samples}
    out = {"command": "python benchmarks/defence_clean_cost.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
           "files": files}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for name, r in files.items():
        print(f"{name}: {r['rewritten']} of {r['samples']} samples rewritten by the defence ({r['share']:.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
