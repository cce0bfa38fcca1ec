#!/usr/bin/env python
"""Best-of-N evaluation of GenRM and its baselines on policy solution pools.

    python jobs/eval_best_of_n.py --config configs/eval_last_letter_cpu.yaml models.policy=runs/x/...
    python jobs/eval_best_of_n.py --config configs/eval_test.yaml --problems my_problems.jsonl
    ray job submit --working-dir . -- python jobs/eval_best_of_n.py --config configs/<eval config>.yaml

Recipe (genrm_ray.evaluation): (1) problems: the task's test and OOD splits and any --problems JSONL
file (question/answer, as the task's `load` reads); (2) the policy samples pool.size solutions per
problem (Ray Data + vLLM), graded by the task; (3) each verifier scores every solution in a Ray Data
pass over its own engine actors; (4) Best-of-N for every N (exact expectation, 95% CI across problems),
self-consistency, pass@1 / pass@N, GenRM-CoT accuracy vs K, adaptive K compute; (5) results.json,
results.md, scores.jsonl and PNG plots in the output dir.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import genrm_ray.env  # noqa: E402

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load
from genrm_ray.config import ConfigError, load_config  # noqa: E402
from genrm_ray.evaluation import EvalConfig, EvalInputError, check_config  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "eval_last_letter_cpu.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG.relative_to(REPO)})")
    p.add_argument("--problems", type=Path, action="append", default=[],
                   help="JSONL problem file (question/answer); repeatable; evaluated alongside the config's splits")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. pool.size=64 cot.k=4")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.config.is_file():
            raise EvalInputError(f"--config: no such file {args.config}")
        cfg = load_config(EvalConfig, args.config, args.overrides)
        cfg.problems.files += [str(p) for p in args.problems]
        check_config(cfg)
        from genrm_ray.evaluation import load_problem_sets, verifier_specs

        verifier_specs(cfg)  # raises on a bad verifier setting before Ray starts
        sets = load_problem_sets(cfg)  # file problems fail here with file:line
    except (ConfigError, EvalInputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from genrm_ray.evaluation import run_evaluation

    out = Path(cfg.output_dir or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    print(f"[eval] config {args.config}")
    genrm_ray.env.connect_ray(cfg.ray_address)
    run_evaluation(cfg, out, sets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
