#!/usr/bin/env python
"""Best-of-N evaluation of GenRM and its baselines on policy solution pools.

    python jobs/eval_best_of_n.py --config experiments/last-letter-tiny/eval_last_letter_cpu.yaml models.policy=runs/x/...
    python jobs/eval_best_of_n.py --config tests/configs/eval_test.yaml --problems my_problems.jsonl
    ray job submit --working-dir . -- python jobs/eval_best_of_n.py --config configs/<eval config>.yaml

Recipe (genrm_ray.evaluation.run): (1) problems: the task's test and OOD splits and any --problems JSONL
file (question/answer, as the task's `load` reads); (2) the policy samples pool.n solutions per
problem (Ray Data + vLLM), graded by the task; (3) each verifier scores every solution in a Ray Data
pass over its own engine actors; (4) Best-of-N for every N (exact expectation, 95% CI across problems),
self-consistency, pass@1 / pass@N, GenRM-CoT accuracy vs K, adaptive K compute; (5) results.json,
results.md, scores.jsonl and PNG plots in the output dir.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genrm_ray import launch  # noqa: E402  (first: project caches + offline settings)
from genrm_ray.evaluation.config import EvalConfig, check_config  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "eval" / "mini_sudoku_demo.yaml"


def add_problem_files(p) -> None:
    p.add_argument("--problems", type=Path, action="append", default=[],
                   help="JSONL problem file (question/answer); repeatable; evaluated alongside the config's splits")


def main(argv: list[str] | None = None) -> int:
    args = launch.parse_args(__doc__, DEFAULT_CONFIG, argv, add_problem_files)
    cfg = launch.load(EvalConfig, args)
    cfg.problems.files += [str(p) for p in args.problems]
    from genrm_ray.evaluation.pools import load_problem_sets, verifier_specs

    try:
        check_config(cfg)
        verifier_specs(cfg)  # a bad verifier setting fails before Ray starts
        sets = load_problem_sets(cfg)  # file problems fail here with file:line
    except launch.BAD_INPUT as e:
        launch.fail(e)

    from genrm_ray.evaluation.run import run_evaluation

    out = launch.run_dir(cfg.output_dir, "eval")
    print(f"[eval] config {args.config}")
    launch.connect_ray(cfg.ray_address, log_dir=out)
    run_evaluation(cfg, out, sets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
