"""What an evaluation shows: the Markdown tables, the PNG plots and every solution's scores (JSONL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from genrm_ray.evaluation.pools import PoolProblem


def markdown_report(results: dict[str, Any]) -> str:
    """One table per problem set: Best-of-N mean (95% CI half-width) for every verifier and bound."""
    lines = []
    for set_name, m in results["sets"].items():
        ns = list(m["pass@n"])
        lines += [f"### {set_name}: {m['n_problems']} problems, pool of {m['pool_size']}, "
                  f"policy accuracy {m['policy_accuracy']:.3f}, "
                  f"{m.get('truncated_share', 0.0):.1%} of solutions cut at the token limit", "",
                  "| verifier | " + " | ".join(f"N={n}" for n in ns) + " |",
                  "|---|" + "---|" * len(ns)]

        def row(name: str, curve: dict[str, dict], ns: list[str] = ns) -> str:
            return f"| {name} | " + " | ".join(
                f"{curve[n]['mean']:.3f} ± {(curve[n]['high'] - curve[n]['low']) / 2:.3f}" for n in ns) + " |"

        lines.append(row("pass@N (oracle)", m["pass@n"]))
        for name, curve in m["best_of_n"].items():
            lines.append(row(name, curve))
        lines.append(row("pass@1 (random pick)", {n: m["pass@1"] for n in ns}))
        if "cot_k_curve" in m:
            n = results["report_n"]
            lines += ["", f"GenRM-CoT Best-of-{n} by number of rationales K: " + ", ".join(
                f"K={k}: {v['mean']:.3f}" for k, v in m["cot_k_curve"].items())]
        if "adaptive_k" in m:
            a = m["adaptive_k"]
            lines += ["", f"Adaptive K (Best-of-{a['n']}): accuracy {a['adaptive']['accuracy']:.3f} with "
                      f"{a['adaptive']['rationales']} rationales (mean K {a['adaptive']['mean_k']:.2f}), "
                      f"{a['adaptive']['tokens']} tokens; fixed K={a['fixed_k']['k']}: accuracy "
                      f"{a['fixed_k']['accuracy']:.3f}, {a['fixed_k']['rationales']} rationales, "
                      f"{a['fixed_k']['tokens']} tokens (saved {a['fixed_k']['rationales_saved']:.1%} rationales, "
                      f"{a['fixed_k']['tokens_saved']:.1%} tokens)."]
            mk = a["fixed_k_matching_accuracy"]
            if mk:
                lines.append(f"Smallest fixed K as accurate: K={mk['k']} ({mk['accuracy']:.3f}), {mk['rationales']} "
                             f"rationales, ~{mk['tokens']} tokens (adaptive saves {mk['rationales_saved']:.1%} "
                             f"rationales, {mk['tokens_saved']:.1%} tokens).")
            else:
                lines.append("No fixed K reaches the adaptive accuracy.")
        if m.get("cot_unfinished_share"):
            lines += ["", "Rationales cut at cot.max_rationale_tokens (scored as cot.unfinished_p_yes): " + ", ".join(
                f"{name} {share:.1%}" for name, share in m["cot_unfinished_share"].items())]
        lines += auroc_table(m) + rationale_table(m) + paired_table(m) + compute_matched_lines(m)
        lines.append("")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def auroc_table(m: dict[str, Any]) -> list[str]:
    """How well each verifier separates right from wrong solutions: over the whole set, and within
    each problem's own pool (what Best-of-N ranks)."""
    if not m.get("auroc"):
        return []
    lines = ["", "| verifier | per-solution AUROC | within-problem AUROC (problems) |", "|---|---|---|"]
    for name, a in m["auroc"].items():
        lines.append(f"| {name} | {_num(a['per_solution'])} | {_num(a['within_problem'])} ({a['problems_with_both']}) |")
    return lines


def rationale_table(m: dict[str, Any]) -> list[str]:
    """What the CoT verifiers' rationales get right, line by line (genrm_ray.evaluation.rationales)."""
    if not m.get("rationale_diagnosis"):
        return []
    keys = ["recomputed_agrees", "verdict_agrees", "verdict_follows_own_values", "wrong_claim_recomputed",
            "wrong_claim_copied", "flags_wrong_solution",
            "flags_right_solution", "verdict_follows_final_line"]
    lines = ["", "| rationales of | " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for name, d in m["rationale_diagnosis"].items():
        lines.append(f"| {name} | " + " | ".join(_num(d[k]) for k in keys) + " |")
    return lines


def compute_matched_lines(m: dict[str, Any]) -> list[str]:
    c = m.get("compute_matched")
    if not c or not any("CoT" in name and "Judge" not in name for name in c["curves"]):
        return []
    p = c["pays_from"]
    if p is None:
        return ["", f"Compute-matched (policy solutions average {c['solution_tokens']:.0f} tokens): no GenRM-CoT point is "
                "more accurate than self-consistency at the same or fewer generated tokens per problem."]
    return ["", f"Compute-matched (policy solutions average {c['solution_tokens']:.0f} tokens): verification pays from "
            f"{p['tokens']:.0f} generated tokens per problem ({p['verifier']}, N={p['n']}: {p['accuracy']:.3f}, above "
            "every self-consistency point that costs no more)."]


def paired_table(m: dict[str, Any]) -> list[str]:
    """Paired differences at Best-of-n with their bootstrap CIs; * marks a CI that excludes 0."""
    paired = m.get("paired") or {}
    pairs = {k: v for k, v in paired.items() if k != "n"}
    if not pairs:
        return []
    lines = ["", f"Paired differences in Best-of-{paired['n']} (same problems and pools; 95% bootstrap CI over problems; "
             "* = the CI excludes 0):", "", "| comparison | difference | 95% CI |", "|---|---|---|"]
    for name, d in pairs.items():
        star = " *" if d["excludes_zero"] else ""
        lines.append(f"| {name} | {d['diff']:+.3f}{star} | [{d['low']:+.3f}, {d['high']:+.3f}] |")
    return lines


def _save(fig, ax, path: Path, legend_size: int = 8) -> Path:
    """The finish every plot here shares: grid, legend, tight layout, PNG, figure closed."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_compute_matched(set_name: str, m: dict[str, Any], path: Path) -> Path:
    """Best-of-N accuracy against generated tokens per problem, one line per verifier (and per K)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = m["compute_matched"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in c["curves"].items():
        style = "k--" if name == "Self-consistency" else "-"
        ax.plot([p["tokens"] for p in points], [p["accuracy"] for p in points], style, marker="o", markersize=3, label=name)
    if c["pays_from"]:
        p = c["pays_from"]
        ax.axvline(p["tokens"], color="gray", linestyle=":", label=f"verification pays from {p['tokens']:.0f} tokens")
    ax.set_xscale("log")
    ax.set_xlabel("tokens generated per problem (solutions + rationales)")
    ax.set_ylabel("Best-of-N accuracy")
    ax.set_title(f"Compute-matched Best-of-N on {set_name}")
    return _save(fig, ax, path, legend_size=7)


def plot_set(set_name: str, m: dict[str, Any], report_n: int, out_dir: Path) -> list[Path]:
    """Best-of-N curves (with pass@1 / pass@N lines) and, if scored, GenRM-CoT accuracy vs K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in set_name)
    paths = []
    ns = [int(n) for n in m["pass@n"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ns, [m["pass@n"][str(n)]["mean"] for n in ns], "k--", label="Pass@N")
    ax.axhline(m["pass@1"]["mean"], color="gray", linestyle=":", label="Pass@1")
    for name, curve in m["best_of_n"].items():
        means = np.array([curve[str(n)]["mean"] for n in ns])
        ax.plot(ns, means, marker="o", label=name)
        ax.fill_between(ns, [curve[str(n)]["low"] for n in ns], [curve[str(n)]["high"] for n in ns], alpha=0.12)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("number of solutions N")
    ax.set_ylabel("Best-of-N accuracy")
    ax.set_title(f"Best-of-N on {set_name} ({m['n_problems']} problems)")
    paths.append(_save(fig, ax, out_dir / f"best_of_n_{safe}.png"))
    if any("CoT" in name for name in m.get("compute_matched", {}).get("curves", {})):
        paths.append(plot_compute_matched(set_name, m, out_dir / f"compute_matched_{safe}.png"))
    if "cot_k_curve" in m:
        ks = [int(k) for k in m["cot_k_curve"]]
        fig, ax = plt.subplots(figsize=(6, 4))
        c = m["cot_k_curve"]
        ax.errorbar(ks, [c[str(k)]["mean"] for k in ks],
                    yerr=[[c[str(k)]["mean"] - c[str(k)]["low"] for k in ks], [c[str(k)]["high"] - c[str(k)]["mean"] for k in ks]],
                    marker="o", capsize=3, label="GenRM-CoT (majority over K)")
        ax.axhline(m["pass@n"][str(report_n)]["mean"], color="k", linestyle="--", label=f"Pass@{report_n}")
        ax.axhline(m["pass@1"]["mean"], color="gray", linestyle=":", label="Pass@1")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("rationales per solution K")
        ax.set_ylabel(f"Best-of-{report_n} accuracy")
        ax.set_title(f"GenRM-CoT vs K on {set_name}")
        paths.append(_save(fig, ax, out_dir / f"cot_k_{safe}.png"))
    return paths


def write_scores(pools: dict[str, list[PoolProblem]], path: Path) -> None:
    """Every solution with its grade and every verifier's score (JSONL), for later analysis."""
    with path.open("w") as f:
        for set_name, pool in pools.items():
            for pp in pool:
                for i, sol in enumerate(pp.solutions):
                    f.write(json.dumps({
                        "set": set_name, "problem_id": pp.problem.id, "sample_index": i, "solution": sol,
                        "correct": pp.correct[i], "answer": pp.answers[i],
                        "truncated": pp.truncated[i] if pp.truncated else None,
                        "solution_tokens": pp.solution_tokens[i] if pp.solution_tokens else None,
                        "scores": {k: v[i] for k, v in pp.scores.items()},
                        # CoT verifiers: rationales drawn, and how many were cut before the verdict
                        "rationales": {k: {"k": pp.k_used[k][i], "unfinished": v[i],
                                           "texts": pp.rationales[k][i] if k in pp.rationales else None,
                                           "p_yes": pp.p_yes[k][i]}
                                       for k, v in pp.unfinished.items()},
                    }) + "\n")
