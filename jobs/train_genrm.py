#!/usr/bin/env python
"""Train a Generative Verifier (GenRM) with Ray Train + DeepSpeed ZeRO, then score it on held-out pairs.

    python jobs/train_genrm.py                                   # the embedded default (make demo; README: its time)
    python jobs/train_genrm.py --config tests/configs/test_tiny.yaml genrm.train.max_steps=5
    ray job submit --working-dir . -- python jobs/train_genrm.py --config configs/<gpu config>.yaml

Recipe: (1) build or reuse the data (problems; the policy, from the policy stage genrm_ray.train.policy:
base model + SFT on reference solutions; Ray Data + vLLM policy samples; D_verify / D_cot / D_correct;
genrm_ray.data.build), unless the config names ready dataset files;
(2) train the verifier (genrm_ray.train.run_training; `genrm.objective` switches GenRM direct / CoT);
(3) held-out accuracy and AUROC of p(Yes) from the engine's next-token log-probabilities;
(4) summary.json, loss_curve.png and the printed summary in the run dir (with `storage` set, the
checkpoints, HF export, metrics and summary.json go to <storage>/<run dir name>/: genrm_ray.runs);
(5) if `eval.best_of_n_config` names an evaluation config (the embedded default does), Best-of-N of the new verifier against its
baselines on the policy's solution pools, with table and plots in <run dir>/eval (genrm_ray.evaluation.run).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

# The submitted working dir (or this checkout) must win over an installed copy of the package.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genrm_ray import launch  # noqa: E402  (first: project caches + offline settings)
from genrm_ray.genrm_job import GenRMJobConfig, best_of_n_config, check_inputs  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "train" / "mini_sudoku_smollm2_demo.yaml"


def plot_losses(curves: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = launch.parse_args(__doc__, DEFAULT_CONFIG, argv)
    cfg = launch.load(GenRMJobConfig, args, check=check_inputs)
    run_dir = launch.run_dir(cfg.run_dir, "genrm", cfg)
    print(f"[job] config {args.config} -> run dir {run_dir}")

    from genrm_ray import console, runs
    from genrm_ray.data.build import build_or_reuse
    from genrm_ray.evaluation.heldout import SCORES_FILE, evaluate_verifier
    from genrm_ray.train.loop import run_training

    launch.connect_ray(cfg.ray_address, log_dir=run_dir)

    # 1. Data.
    t = time.perf_counter()
    genrm = copy.deepcopy(cfg.genrm)
    heldout = cfg.eval.heldout
    data_info: dict = {"source": "given files"}
    if not genrm.data.verify_direct and not genrm.data.verify_cot:
        built = build_or_reuse(cfg.data)
        genrm.data.verify_direct, genrm.data.verify_cot = str(built.verify_direct), str(built.verify_cot)
        genrm.data.correct = str(built.correct)
        genrm.model.path = genrm.model.path or str(built.policy)
        heldout = heldout or str(built.heldout)
        data_info = {"source": "reused cache" if built.reused else "built", "folder": str(built.folder), **built.stats}
    data_s = time.perf_counter() - t

    # 2. Train the verifier.
    genrm.output_dir = str(run_dir / "genrm")
    stored = runs.join(runs.as_location(cfg.storage), run_dir.name) if cfg.storage else run_dir
    genrm.storage = str(runs.join(stored, "genrm")) if cfg.storage else ""
    t = time.perf_counter()
    result = run_training(genrm)
    train_s = time.perf_counter() - t

    # 3. Held-out verification.
    t = time.perf_counter()
    cot = cfg.eval.cot if genrm.objective.name == "genrm" and genrm.objective.mode == "cot" else None
    with console.engine_stderr_to_log():  # the engine runs in this process: its noise to vllm.log
        heldout_metrics = evaluate_verifier(runs.local_model_dir(result.hf_model), heldout, cfg.eval.backend, cot=cot,
                                            scores_out=run_dir / SCORES_FILE, rationale_format=cfg.data.rationale_format,
                                            **cfg.eval.engine_options)
    eval_s = time.perf_counter() - t

    # 4. Summary.
    curves = result.loss_curves
    plot_losses({k: v for k, v in curves.items() if k != "loss" or len(curves) == 1},
                run_dir / "loss_curve.png", f"{_verifier_name(genrm)} on {cfg.data.task.name}")
    summary = {
        "heldout": heldout_metrics,
        "final_loss": {k: round(v[-1], 5) for k, v in curves.items()},
        "train_tokens_per_s": round(result.tokens_per_s, 1),
        "padding_share": round(result.padding_share, 4),
        "steps": len(curves.get("loss", [])),
        "zero_stage": genrm.deepspeed.zero_stage,
        "num_workers": genrm.scaling.num_workers,
        "hf_model": str(result.hf_model),
        "checkpoint": result.checkpoint,
        "loss_curve_png": str(run_dir / "loss_curve.png"),
        "data": data_info,
        "task": {"name": cfg.data.task.name, "options": cfg.data.task.options},  # what serving and GRPO take
        "wall_s": {"data": round(data_s, 1), "train": round(train_s, 1), "eval": round(eval_s, 1),
                   "total": round(time.perf_counter() - t_start, 1)},
    }
    write_summary(summary, run_dir, stored)
    print_summary(summary, run_dir)

    # 5. Best-of-N of the new verifier and its baselines on the policy's solution pools.
    if cfg.eval.best_of_n_config:
        from genrm_ray.evaluation.run import run_evaluation

        policy = data_info.get("policy") or cfg.data.policy.path or genrm.model.path
        eval_cfg = best_of_n_config(cfg, policy=str(policy), verifier=str(result.hf_model))
        results = run_evaluation(eval_cfg, run_dir / "eval")
        summary["best_of_n"] = {"results": str(run_dir / "eval" / "results.json"), "wall_s": results["wall_s"]["total"]}
        write_summary(summary, run_dir, stored)
    return 0


def write_summary(summary: dict, run_dir: Path, stored) -> None:
    """summary.json in the run dir, and in the run's storage location when that is elsewhere."""
    from genrm_ray import runs

    text = json.dumps(summary, indent=2) + "\n"
    (run_dir / "summary.json").write_text(text)
    if stored != run_dir:
        runs.write_text(runs.join(stored, "summary.json"), text)


def _verifier_name(genrm) -> str:
    return "discriminative RM" if genrm.objective.name == "discriminative" else f"GenRM ({genrm.objective.mode})"


def print_summary(s: dict, run_dir: Path) -> None:
    h = s["heldout"]
    print("\n=== GenRM summary ===")
    how = f"GenRM-CoT, K={h['cot_k']} rationales at T={h['cot_temperature']}, {h['unfinished_share']:.1%} cut; " if "cot_k" in h else ""
    within = "n/a" if h.get("within_problem_auroc") is None else f"{h['within_problem_auroc']:.3f}"
    print(f"held-out verification: {how}accuracy {h['accuracy']:.3f}  AUROC {h['auroc']:.3f}  "
          f"({h['n']} pairs, {h['positives']} correct; mean score {h['mean_score_correct']:.3f} on correct, "
          f"{h['mean_score_wrong']:.3f} on wrong)\n"
          f"  within-problem AUROC {within} over the {h.get('problems_with_both', 0)} problems with a right and a wrong pair")
    if (agree := h.get("line_agreement")) is not None:
        kinds = ", ".join(f"{k} {v['exact']:.1%}" for k, v in agree["by_kind"].items())
        print(f"  rationale lines equal to the programmatic check: {agree['exact']:.1%} of {agree['lines']} ({kinds})")
    print("final losses: " + "  ".join(f"{k} {v:.4f}" for k, v in s["final_loss"].items()))
    print(f"training: {s['steps']} steps, {s['train_tokens_per_s']:.0f} tokens/s, ZeRO-{s['zero_stage']}, "
          f"{s['num_workers']} workers")
    print(f"HF export: {s['hf_model']}\ncheckpoint: {s['checkpoint']}")
    print(f"summary: {run_dir / 'summary.json'}  loss curve: {s['loss_curve_png']}")
    w = s["wall_s"]
    print(f"wall: data {w['data']} s, train {w['train']} s, eval {w['eval']} s, total {w['total']} s")


if __name__ == "__main__":
    sys.exit(main())
