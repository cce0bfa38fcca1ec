"""GRPO curves: held-out pass@1 and mean reward of one or more runs (e.g. one per reward source).

    python -m genrm_ray.rl.plots runs/grpo-genrm_cot runs/grpo-oracle --out docs/img/grpo_reward_sources.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """metrics.jsonl of a run, one row per step; a step logged again after a resume keeps its last row."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a GRPO run dir (no metrics.jsonl)")
    rows: dict[int, dict[str, Any]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not JSON ({e})") from None
        rows[row["step"]] = row
    return [rows[k] for k in sorted(rows)]


def plot_grpo_runs(runs: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """Held-out pass@1 against wall-clock minutes; mean training reward against step; the reward's
    AUROC against correctness on each step's rollouts (where it falls, the reward is being gamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, gamed) = plt.subplots(1, 3, figsize=(16, 4))
    for name, rows in runs.items():
        evals = [(x.get("elapsed_s", 0.0) / 60, x["pass_at_1"]) for x in rows if "pass_at_1" in x]
        left.plot(*zip(*evals), marker="o", ms=3, label=name)
        steps = [(x["step"], x["reward_mean"]) for x in rows if "reward_mean" in x]
        if steps:
            right.plot(*zip(*steps), label=name)
        aurocs = [(x["step"], x["reward_auroc"]) for x in rows if x.get("reward_auroc", -1) >= 0]
        if aurocs:
            gamed.plot(*zip(*aurocs), label=name)
    left.set(xlabel="wall-clock minutes", ylabel="held-out pass@1", title="Held-out pass@1 during GRPO")
    right.set(xlabel="GRPO step", ylabel="mean reward of the rollouts", title="Training reward (each source's own scale)")
    gamed.axhline(0.5, color="grey", lw=0.8, ls="--")
    gamed.set(xlabel="GRPO step", ylabel="AUROC of reward vs correctness", title="Reward against the grader, per step")
    for ax in (left, right, gamed):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if not gamed.get_legend_handles_labels()[0]:  # AUROC needs a step with both right and wrong rollouts
        gamed.text(0.5, 0.5, "no step had both right and wrong rollouts", ha="center", transform=gamed.transAxes)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description="Plot GRPO runs side by side")
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    runs = {}
    for d in args.run_dirs:
        cfg = json.loads((d / "grpo_config.json").read_text()) if (d / "grpo_config.json").is_file() else {}
        name = cfg.get("reward", {}).get("source", d.name)
        runs[d.name if name in runs else name] = read_metrics(d)  # two runs of one source: by folder
    print(plot_grpo_runs(runs, args.out))


if __name__ == "__main__":
    main()
