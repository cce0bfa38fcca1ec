#!/usr/bin/env python
"""Held-out GenRM-CoT figures of a trained run at other sampling settings (no retraining):

    python experiments/checkable-tasks-smollm2/rescore.py runs/select-sudoku-e46 --temperature 0.3 --k 2 --out FILE

Scores the run's held-out pairs (its data folder's heldout.jsonl) with the run's exported verifier
and reports AUROC, within-problem AUROC and line agreement with the programmatic check; the
rationales go beside FILE. The held-out split is validation data, so choosing a temperature here
is allowed; nothing here reads a test split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import genrm_ray  # noqa: E402,F401  (caches + offline settings)
from genrm_ray.evaluation.heldout import evaluate_verifier  # noqa: E402
from genrm_ray.scoring import CotConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--temperature", type=float, required=True)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--max-rationale-tokens", type=int, default=320)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    summary = json.loads((args.run / "summary.json").read_text())
    folder = Path(summary["data"]["folder"])
    heldout = folder / "heldout.jsonl"
    build = json.loads((folder / "build_config.json").read_text())
    cot = CotConfig(k=args.k, temperature=args.temperature, max_rationale_tokens=args.max_rationale_tokens)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    metrics = evaluate_verifier(summary["hf_model"], heldout, "vllm", cot=cot, scores_out=args.out.with_suffix(".scores.jsonl"),
                                rationale_format=build.get("rationale_format", "quoted"),
                                max_model_len=1024, cpu_threads_bind="all", gpu_memory_utilization=0.3)
    result = {"command": "python experiments/checkable-tasks-smollm2/rescore.py " + " ".join(sys.argv[1:]),
              "run": str(args.run), "heldout": metrics, "wall_s": round(time.perf_counter() - t, 1)}
    text = json.dumps(result, indent=2)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
