#!/usr/bin/env python
"""Train a Generative Verifier (GenRM) with Ray Train + DeepSpeed ZeRO, then score it on held-out pairs.

    python jobs/train_genrm.py                                   # the embedded default (CPU, ~15 min)
    python jobs/train_genrm.py --config configs/test_tiny.yaml genrm.train.max_steps=5
    ray job submit --working-dir . -- python jobs/train_genrm.py --config configs/<gpu config>.yaml

Recipe: (1) build or reuse the data (problems, SFT'd policy, Ray Data + vLLM policy samples,
D_verify / D_cot / D_correct; genrm_ray.pipeline), unless the config names ready dataset files;
(2) train the verifier (genrm_ray.train.run_training; `genrm.objective` switches GenRM direct / CoT);
(3) held-out accuracy and AUROC of p(Yes) from the engine's next-token log-probabilities;
(4) summary.json, loss_curve.png and the printed summary in the run dir; (5) if `eval.best_of_n_config`
names an evaluation config (the embedded default does), Best-of-N of the new verifier against its
baselines on the policy's solution pools, with table and plots in <run dir>/eval (genrm_ray.evaluation).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

# The submitted working dir (or this checkout) must win over an installed copy of the package.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import genrm_ray.env  # noqa: E402

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load
from genrm_ray import sft_data  # noqa: E402
from genrm_ray.config import ConfigError, load_config, to_dict  # noqa: E402
from genrm_ray.pipeline import GenRMJobConfig  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "genrm_last_letter_cpu.yaml"


class JobInputError(ValueError):
    """Bad job input found before anything expensive starts."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG.relative_to(REPO)})")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. genrm.train.lr=1e-3")
    return p.parse_args(argv)


def check_inputs(cfg: GenRMJobConfig) -> None:
    """Everything that can be checked without Ray or a model: files exist and parse, choices are valid."""
    g = cfg.genrm
    if cfg.eval.backend not in ("vllm", "hf"):
        raise JobInputError(f"eval.backend must be 'vllm' or 'hf', got {cfg.eval.backend!r}")
    try:
        heldout_cot_settings(cfg)
    except ValueError as e:
        raise JobInputError(f"eval.cot_k / eval.cot_temperature: {e}") from None
    if g.objective.name not in ("genrm", "discriminative"):
        raise JobInputError(
            f"genrm.objective.name must be 'genrm' or 'discriminative' (the baseline RM) in this job, got "
            f"{g.objective.name!r}; the policy is trained by the data stage (data.policy.train)"
        )
    given = {key: path for key, path in [("genrm.data.verify_direct", g.data.verify_direct),
                                          ("genrm.data.verify_cot", g.data.verify_cot),
                                          ("genrm.data.correct", g.data.correct),
                                          ("eval.heldout", cfg.eval.heldout)] if path}
    for key, path in given.items():
        if not Path(path).is_file():
            raise JobInputError(f"{key}: no such file {path}")
        kinds = ["verify_direct"] if key in ("genrm.data.verify_direct", "eval.heldout") else [key.rsplit(".", 1)[1]]
        sft_data.load_sft_jsonl(path, kinds=kinds)  # SFTDataError names file:line
    if given:
        verify = g.data.verify_direct if g.objective.mode == "direct" else g.data.verify_cot
        missing = [k for k, v in [(f"genrm.data.verify_{g.objective.mode}", verify), ("eval.heldout", cfg.eval.heldout),
                                  ("genrm.model.path", g.model.path)] if not v]
        if g.objective.lambda_correct > 0 and not g.data.correct:
            missing.append("genrm.data.correct (or genrm.objective.lambda_correct=0)")
        if missing:
            raise JobInputError(f"dataset files were given, so the data is not built; also set: {', '.join(missing)}")
    if cfg.eval.best_of_n_config:
        best_of_n_config(cfg, policy="", verifier="")  # unknown keys / bad values fail now, not after training
    for key, path in [("genrm.model.path", g.model.path), ("data.base_model.path", cfg.data.base_model.path),
                      ("data.policy.path", cfg.data.policy.path)]:
        if path and not (Path(path) / "config.json").is_file():
            raise JobInputError(f"{key}: {path} is not a Hugging Face model dir (no config.json)")


def heldout_cot_settings(cfg: GenRMJobConfig):
    """How a GenRM-CoT run's held-out pairs are scored (eval.cot_*); ValueError names a bad value."""
    from genrm_ray.scoring import CotSettings

    e = cfg.eval
    return CotSettings(k=e.cot_k, temperature=e.cot_temperature, max_rationale_tokens=e.cot_max_rationale_tokens)


def best_of_n_config(cfg: GenRMJobConfig, policy: str, verifier: str):
    """The evaluation config for the verifier this job trains: models.policy and the verifier's entry
    (genrm_direct, genrm_cot or discriminative) point at this run; output under <run dir>/eval."""
    from genrm_ray.evaluation import EvalConfig

    path = Path(cfg.eval.best_of_n_config)
    if not path.is_absolute() and not path.is_file():
        path = REPO / path  # configs name repo files relative to the checkout
    if not path.is_file():
        raise JobInputError(f"eval.best_of_n_config: no such file {path}")
    g = cfg.genrm
    key = "discriminative" if g.objective.name == "discriminative" else f"genrm_{g.objective.mode}"
    filled = [f"models.policy={policy}", f"models.{key}={verifier}"] if policy else []
    return load_config(EvalConfig, path, [*cfg.eval.best_of_n_overrides, *filled])


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
    args = parse_args(argv)
    try:
        if not args.config.is_file():
            raise JobInputError(f"--config: no such file {args.config}")
        cfg = load_config(GenRMJobConfig, args.config, args.overrides)
        check_inputs(cfg)
    except (ConfigError, JobInputError, sft_data.SFTDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    run_dir = Path(cfg.run_dir or f"runs/genrm-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    print(f"[job] config {args.config} -> run dir {run_dir}")

    from genrm_ray.pipeline import build_or_reuse, evaluate_verifier
    from genrm_ray.train.loop import run_training

    genrm_ray.env.connect_ray(cfg.ray_address)

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
    t = time.perf_counter()
    result = run_training(genrm)
    train_s = time.perf_counter() - t

    # 3. Held-out verification.
    t = time.perf_counter()
    cot = heldout_cot_settings(cfg) if genrm.objective.name == "genrm" and genrm.objective.mode == "cot" else None
    heldout_metrics = evaluate_verifier(result.hf_model, heldout, cfg.eval.backend, cot=cot, **cfg.eval.engine_options)
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
        "wall_s": {"data": round(data_s, 1), "train": round(train_s, 1), "eval": round(eval_s, 1),
                   "total": round(time.perf_counter() - t_start, 1)},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, run_dir)

    # 5. Best-of-N of the new verifier and its baselines on the policy's solution pools.
    if cfg.eval.best_of_n_config:
        from genrm_ray.evaluation import run_evaluation

        policy = data_info.get("policy") or cfg.data.policy.path or genrm.model.path
        eval_cfg = best_of_n_config(cfg, policy=str(policy), verifier=str(result.hf_model))
        results = run_evaluation(eval_cfg, run_dir / "eval")
        summary["best_of_n"] = {"results": str(run_dir / "eval" / "results.json"), "wall_s": results["wall_s"]["total"]}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _verifier_name(genrm) -> str:
    return "discriminative RM" if genrm.objective.name == "discriminative" else f"GenRM ({genrm.objective.mode})"


def print_summary(s: dict, run_dir: Path) -> None:
    h = s["heldout"]
    print("\n=== GenRM summary ===")
    how = f"GenRM-CoT, K={h['cot_k']} rationales at T={h['cot_temperature']}, {h['unfinished_share']:.1%} cut; " if "cot_k" in h else ""
    print(f"held-out verification: {how}accuracy {h['accuracy']:.3f}  AUROC {h['auroc']:.3f}  "
          f"({h['n']} pairs, {h['positives']} correct; mean score {h['mean_score_correct']:.3f} on correct, "
          f"{h['mean_score_wrong']:.3f} on wrong)")
    print("final losses: " + "  ".join(f"{k} {v:.4f}" for k, v in s["final_loss"].items()))
    print(f"training: {s['steps']} steps, {s['train_tokens_per_s']:.0f} tokens/s, ZeRO-{s['zero_stage']}, "
          f"{s['num_workers']} workers")
    print(f"HF export: {s['hf_model']}\ncheckpoint: {s['checkpoint']}")
    print(f"summary: {run_dir / 'summary.json'}  loss curve: {s['loss_curve_png']}")
    w = s["wall_s"]
    print(f"wall: data {w['data']} s, train {w['train']} s, eval {w['eval']} s, total {w['total']} s")


if __name__ == "__main__":
    sys.exit(main())
