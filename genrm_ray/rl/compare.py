"""Paired comparisons of GRPO runs on the same held-out problems.

Every held-out evaluation of jobs/train_grpo.py appends its per-problem outcomes to the run's
heldout.jsonl (genrm_ray.rl.step.log_heldout). Runs of one config evaluate the same problems from the
same starting policy, so a run's gain (last evaluation minus step 0) and the difference between two
runs' last evaluations are paired over problems: a bootstrap that resamples problems gives their 95%
CIs (genrm_ray.stats.paired_bootstrap), far tighter than two independent +-0.07 CIs.

    python -m genrm_ray.rl.compare oracle=runs/grpo-ar-oracle genrm_cot=runs/grpo-ar-genrm_cot \\
        --reference genrm_cot --out results.json --plot curves.png

A run made before heldout.jsonl existed has only the mean in its metrics; ``--evaluate-missing``
re-evaluates its starting policy and its exported final policy (``hf_model``) with a fresh vLLM engine
and the run's own eval settings, and writes them as its heldout.jsonl (marked ``"source": "export"``).
Each re-evaluated mean is reported beside the one the run logged: a greedy decode of the export
should reproduce it, and where it does not the difference is in the output.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from genrm_ray.rl.plots import plot_grpo_runs, read_metrics
from genrm_ray.rl.step import HELDOUT_FILE, ROLLOUTS_FILE, heldout_correct, log_heldout, mean_or
from genrm_ray.stats import paired_bootstrap

REEVALUATED_FILE = "heldout_reevaluated.json"  # evaluate_run_exports' means beside the logged ones


def read_heldout(run_dir: str | Path) -> dict[int, dict[str, float]]:
    """step -> {problem id: correctness} from a run's heldout.jsonl; a step logged twice (a resume)
    keeps its last line."""
    path = Path(run_dir) / HELDOUT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-problem held-out outcomes (a run made before they were logged: "
                                "--evaluate-missing re-evaluates its start and its exported policy)")
    evals: dict[int, dict[str, float]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            ids, correct = row["problem_ids"], row["correct"]
            if len(ids) != len(correct):
                raise ValueError(f"{len(ids)} problem ids but {len(correct)} outcomes")
            evals[int(row["step"])] = dict(zip(ids, map(float, correct)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{i}: not a held-out evaluation line ({type(e).__name__}: {e})") from None
    if not evals:
        raise ValueError(f"{path}: empty")
    return evals


def paired_difference(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    """mean(after - before) over the same problems with its 95% bootstrap CI; ValueError when the two
    evaluations are not of the same problems (different task seeds or n_heldout)."""
    if set(after) != set(before):
        raise ValueError(f"not the same held-out problems: {len(set(after) - set(before))} only in one evaluation, "
                         f"{len(set(before) - set(after))} only in the other (same task, seed and n_heldout?)")
    ids = sorted(after)
    d = paired_bootstrap([after[i] for i in ids], [before[i] for i in ids])
    return {"diff": round(d.diff, 4), "low": round(d.low, 4), "high": round(d.high, 4), "n": d.n}


def compare_runs(runs: Mapping[str, Mapping[int, Mapping[str, float]]], reference: str | None = None) -> dict[str, Any]:
    """Per run: pass@1 at step 0 and at its last evaluation, and the gain between them (paired); with
    ``reference``, each other run's last evaluation minus the reference's (paired); with an ``oracle``
    run that gained, each run's gain as a share of the oracle's (a point estimate: a ratio of two noisy
    gains; None when the oracle did not gain, where a share means nothing)."""
    if reference is not None and reference not in runs:
        raise ValueError(f"reference {reference!r} is not one of the runs: {sorted(runs)}")
    out: dict[str, Any] = {}
    for name, evals in runs.items():
        if 0 not in evals:
            raise ValueError(f"run {name!r}: no evaluation at step 0 to measure a gain from (steps {sorted(evals)})")
        last = max(evals)
        start, end = evals[0], evals[last]
        row: dict[str, Any] = {"last_step": last, "pass_at_1_start": round(mean_or(list(start.values())), 4),
                               "pass_at_1_end": round(mean_or(list(end.values())), 4),
                               "gain": paired_difference(end, start)}
        if reference is not None and name != reference:
            row["vs_" + reference] = paired_difference(end, runs[reference][max(runs[reference])])
        out[name] = row
    oracle_gain = out.get("oracle", {}).get("gain", {}).get("diff")
    for row in out.values():
        row["share_of_oracle_gain"] = round(row["gain"]["diff"] / oracle_gain, 3) if oracle_gain and oracle_gain > 0 else None
    return out


def run_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a run's metrics rows say beside its held-out outcomes: steps and minutes, the reward's
    per-step AUROC against the grader (mean, range), the last step's KL, the verifier refreshes."""
    steps = [x for x in rows if "reward_mean" in x]
    aurocs = [x["reward_auroc"] for x in steps if x.get("reward_auroc", -1) >= 0]
    minutes = rows[-1].get("elapsed_s", 0.0) / 60
    return {"steps": len(steps), "minutes": round(minutes, 2),
            "s_per_step": round(60 * minutes / len(steps), 1) if steps else None,
            "pass_at_1": [[x["step"], round(x["pass_at_1"], 4)] for x in rows if "pass_at_1" in x],
            "reward_auroc_mean": round(sum(aurocs) / len(aurocs), 3) if aurocs else None,
            "reward_auroc_range": [round(min(aurocs), 3), round(max(aurocs), 3)] if aurocs else None,
            "reward_auroc_per_step": [round(a, 3) for a in aurocs],
            "kl_last": round(steps[-1]["kl"], 5) if steps else None,
            "refreshes": sum(1 for x in steps if x.get("refresh_skipped") == 0.0)}


def read_rollouts(run_dir: str | Path) -> dict[int, list[dict[str, Any]]]:
    """step -> its rollouts from a run's rollouts.jsonl (empty for a run made before they were logged)."""
    path = Path(run_dir) / ROLLOUTS_FILE
    if not path.is_file():
        return {}
    steps: dict[int, list[dict[str, Any]]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            step = int(row["step"])
            row["reward"], row["correct"] = float(row["reward"]), bool(row["correct"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{i}: not a rollout line ({type(e).__name__}: {e})") from None
        steps.setdefault(step, []).append(row)
    return steps


def fooled_rollouts(run_dir: str | Path, n: int = 3, threshold: float = 0.5, last_steps: int = 10) -> dict[str, Any]:
    """What a reward paid for that the grader calls wrong: per step, the share of wrong rollouts with
    reward above ``threshold``; and the ``n`` highest-paid wrong rollouts of the run's last ``last_steps``
    steps (distinct texts), the examples a report shows of a hacked reward."""
    steps = read_rollouts(run_dir)
    if not steps:
        return {}
    share = {s: mean_or([float(r["reward"] > threshold) for r in rows if not r["correct"]])
             for s, rows in sorted(steps.items())}
    late = [r for s in sorted(steps)[-last_steps:] for r in steps[s] if not r["correct"] and r["reward"] > threshold]
    examples, seen = [], set()
    for r in sorted(late, key=lambda r: -r["reward"]):
        if r["response"] not in seen and len(examples) < n:
            seen.add(r["response"])
            examples.append({k: r[k] for k in ("step", "problem_id", "reward", "response")})
    return {"threshold": threshold,
            "wrong_paid_share_per_step": [[s, round(v, 4)] for s, v in share.items() if v >= 0],
            "examples": examples}


def evaluate_run_exports(run_dir: str | Path) -> dict[str, Any]:
    """heldout.jsonl for a run that predates it: its starting policy (step 0) and its exported final
    policy (its last step), each decoded by a fresh vLLM engine with the run's eval settings. Returns the
    re-evaluated means beside the logged ones."""
    from genrm_ray.config import load_config
    from genrm_ray.engine import VLLMBackend
    from genrm_ray.rl.config import GRPOConfig
    from genrm_ray.tasks import get_task
    from genrm_ray.tasks.config import load_problems

    run_dir = Path(run_dir)
    if (run_dir / HELDOUT_FILE).exists():
        raise FileExistsError(f"{run_dir / HELDOUT_FILE} exists: the run logged its own outcomes")
    cfg = load_config(GRPOConfig, run_dir / "grpo_config.json")
    task = get_task(cfg.task.name, cfg.task.options)
    problems = load_problems(cfg.task)[1]
    logged = {x["step"]: x["pass_at_1"] for x in read_metrics(run_dir) if "pass_at_1" in x}
    last = max(logged)
    evaluated = []
    for step, model_dir in [(0, cfg.models.policy), (last, str(run_dir / "hf_model"))]:
        backend = VLLMBackend(model_dir, **cfg.rollout.engine)
        try:
            evaluated.append((step, model_dir, heldout_correct(backend.generate, task, problems, cfg)))
        finally:
            backend.close()
    # Written once both decodes succeeded: a half-written heldout.jsonl would block a rerun.
    results = {f"step_{step}": {"model": model_dir, "logged": logged[step],
                                "re_evaluated": round(log_heldout(run_dir, step, problems, correct, source="export"), 4)}
               for step, model_dir, correct in evaluated}
    (run_dir / REEVALUATED_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Paired comparison of GRPO runs on their held-out problems")
    p.add_argument("runs", nargs="+", help="NAME=RUN_DIR (or RUN_DIR, named by its folder)")
    p.add_argument("--reference", help="the run every other run's final pass@1 is compared with")
    p.add_argument("--evaluate-missing", action="store_true",
                   help="re-evaluate the start and exported policy of runs without heldout.jsonl (vLLM)")
    p.add_argument("--about", default="", help="what was run, on which machine (kept in the JSON)")
    p.add_argument("--out", type=Path, help="write the comparison here (JSON)")
    p.add_argument("--plot", type=Path, help="draw the runs' curves here (genrm_ray.rl.plots)")
    args = p.parse_args(argv)
    named = dict(r.split("=", 1) if "=" in r else (Path(r).name, r) for r in args.runs)
    if args.evaluate_missing:
        for name, d in named.items():
            if not (Path(d) / HELDOUT_FILE).exists():
                print(f"[compare] {name}: re-evaluated {evaluate_run_exports(d)}")
    re_evaluated = {n: json.loads((Path(d) / REEVALUATED_FILE).read_text()) for n, d in named.items()
                    if (Path(d) / REEVALUATED_FILE).is_file()}
    try:
        comparison = compare_runs({n: read_heldout(d) for n, d in named.items()}, args.reference)
        metrics = {n: read_metrics(d) for n, d in named.items()}  # for the stats and the plot
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"compare: {e}") from None
    result = {"command": "python -m genrm_ray.rl.compare " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "about": args.about, "runs": {n: str(d) for n, d in named.items()}, "re_evaluated": re_evaluated,
              "comparison": comparison, "run_stats": {n: run_stats(rows) for n, rows in metrics.items()},
              "fooled": {n: fooled_rollouts(d) for n, d in named.items()}}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.plot:
        print(plot_grpo_runs(metrics, args.plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
