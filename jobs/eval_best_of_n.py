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
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import genrm_ray  # noqa: E402  (caches and offline settings first)
from genrm_ray.config import ConfigError, load_config, to_dict  # noqa: E402
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
    t_start = time.perf_counter()
    args = parse_args(argv)
    try:
        if not args.config.is_file():
            raise EvalInputError(f"--config: no such file {args.config}")
        cfg = load_config(EvalConfig, args.config, args.overrides)
        cfg.problems.files += [str(p) for p in args.problems]
        check_config(cfg)
        from genrm_ray.evaluation import load_problem_sets, verifier_specs

        specs = verifier_specs(cfg)
        sets = load_problem_sets(cfg)  # file problems fail here with file:line
    except (ConfigError, EvalInputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from genrm_ray.evaluation import build_pools, markdown_report, plot_set, pool_metrics, score_pools, write_scores

    out = Path(cfg.output_dir or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    print(f"[eval] config {args.config} -> {out}; sets: " + ", ".join(f"{k} ({len(v)})" for k, v in sets.items()))
    genrm_ray.env.connect_ray(cfg.ray_address)

    timings = {}
    t = time.perf_counter()
    pools = build_pools(cfg, sets)
    timings["sampling"] = round(time.perf_counter() - t, 1)
    for spec in specs:
        t = time.perf_counter()
        print(f"[eval] scoring with {spec.name} ({spec.kind}, {spec.mode}{', adaptive K' if spec.adaptive else ''}) "
              f"from {spec.model_dir}")
        score_pools(cfg, pools, spec)
        timings[spec.name] = round(time.perf_counter() - t, 1)

    results = {
        "task": cfg.problems.task,
        "ns": cfg.ns,
        "report_n": cfg.report_n,
        "verifiers": [{"name": s.name, "kind": s.kind, "mode": s.mode, "adaptive": s.adaptive, "model_dir": s.model_dir}
                      for s in specs],
        "sets": {name: pool_metrics(cfg, pool, specs) for name, pool in pools.items()},
        "wall_s": {**timings, "total": round(time.perf_counter() - t_start, 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_report(results)
    (out / "results.md").write_text(table + "\n")
    plots = [p for name, m in results["sets"].items() for p in plot_set(name, m, cfg.report_n, out)]
    write_scores(pools, out / "scores.jsonl")
    print("\n=== Best-of-N ===\n" + table)
    print(f"results: {out / 'results.json'}  table: {out / 'results.md'}  plots: {', '.join(p.name for p in plots)}")
    print(f"wall: {results['wall_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
