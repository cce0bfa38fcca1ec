"""One whole Best-of-N evaluation: pools -> every verifier's scores -> metrics -> report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from genrm_ray.evaluation.config import EvalConfig
from genrm_ray.evaluation.metrics import pool_metrics
from genrm_ray.evaluation.pools import build_pools, load_pools, load_problem_sets, score_pools, verifier_specs
from genrm_ray.evaluation.report import markdown_report, plot_set, write_scores
from genrm_ray.tasks import Problem


def run_evaluation(cfg: EvalConfig, out: Path, sets: dict[str, list[Problem]] | None = None, log=print) -> dict[str, Any]:
    """Pools -> every verifier's scores -> metrics, with results.json, results.md, scores.jsonl and
    plots in ``out``. Ray must be connected. Used by jobs/eval_best_of_n.py and, after training, by
    jobs/train_genrm.py (the embedded default ends with a Best-of-N table)."""
    from genrm_ray.config import to_dict

    t_start = time.perf_counter()
    specs = verifier_specs(cfg)
    sets = load_problem_sets(cfg) if sets is None else sets
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    log(f"[eval] -> {out}; sets: " + ", ".join(f"{k} ({len(v)})" for k, v in sets.items()))
    timings, scored = {}, {}
    t = time.perf_counter()
    pools = load_pools(cfg, sets, Path(cfg.reuse_pool), log=log) if cfg.reuse_pool else build_pools(cfg, sets, log=log)
    timings["sampling"] = round(time.perf_counter() - t, 1)
    for spec in specs:
        t = time.perf_counter()
        log(f"[eval] scoring with {spec.name} ({spec.kind}, {spec.mode}{', adaptive K' if spec.adaptive else ''}) "
            f"from {spec.model_dir}")
        scored[spec.name] = score_pools(cfg, pools, spec)
        timings[spec.name] = round(time.perf_counter() - t, 1)
        log(f"[eval] {spec.name}: scored {scored[spec.name]['scored']} distinct of {scored[spec.name]['solutions']} "
            f"solutions in {timings[spec.name]} s")
    results = {
        "task": cfg.problems.task,
        "ns": cfg.ns,
        "report_n": cfg.report_n,
        "verifiers": [{"name": s.name, "kind": s.kind, "mode": s.mode, "adaptive": s.adaptive, "model_dir": s.model_dir}
                      for s in specs],
        "sets": {name: pool_metrics(cfg, pool, specs) for name, pool in pools.items()},
        "scored_solutions": scored,  # distinct solutions scored per verifier (scoring.dedup)
        "wall_s": {**timings, "total": round(time.perf_counter() - t_start, 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_report(results)
    (out / "results.md").write_text(table + "\n")
    plots = [p for name, m in results["sets"].items() for p in plot_set(name, m, cfg.report_n, out)]
    write_scores(pools, out / "scores.jsonl")
    log("\n=== Best-of-N ===\n" + table)
    log(f"results: {out / 'results.json'}  table: {out / 'results.md'}  plots: {', '.join(p.name for p in plots)}")
    log(f"wall: {results['wall_s']}")
    return results
