#!/usr/bin/env python
"""The selection measurements of one GenRM-CoT training run (jobs/train_genrm.py) on a reasoning-gym task:

    python experiments/checkable-tasks-smollm2/measure.py runs/select-sudoku-e46 [--samples 16] [--out FILE]

- the policy's pass@1 and pass@16 on the run's held-out (validation) problems: 16 fresh samples per
  problem at the data build's sampling temperature;
- the GenRM-CoT's held-out figures restricted to the policy's own solutions (the held-out set also holds
  programmatic candidates): AUROC, within-problem AUROC, and the share of rationale lines equal to the
  programmatic check, from the run's heldout_scores.jsonl and heldout_rationales.jsonl;
- the same over all held-out pairs, as the job printed them.
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
from genrm_ray import prompts  # noqa: E402
from genrm_ray.data.sft import load_sft_jsonl  # noqa: E402
from genrm_ray.env import machine_record  # noqa: E402
from genrm_ray.evaluation.heldout import RATIONALES_FILE, SCORES_FILE  # noqa: E402
from genrm_ray.evaluation.rationales import line_agreement  # noqa: E402
from genrm_ray.stats import auroc, pass_at_n, within_problem_auroc  # noqa: E402
from genrm_ray.tasks import get_task  # noqa: E402


def policy_pass_at(task, problems, policy: str, n: int, temperature: float, max_tokens: int,
                   engine_options: dict) -> dict:
    from genrm_ray.engine import make_backend

    # The CPU backend reserves this share of RAM up front; other jobs on the machine may hold some.
    engine = make_backend("vllm", policy, **{"gpu_memory_utilization": 0.3, **engine_options})
    try:
        t = time.perf_counter()
        outs = engine.generate([prompts.solve_prompt(task.name, p.question) for p in problems], n=n,
                               temperature=temperature, max_tokens=max_tokens, stop=prompts.SOLVE_STOPS, seed=0)
        wall = time.perf_counter() - t
    finally:
        engine.close()
    correct = [[task.is_correct(c.text, p) for c in out] for p, out in zip(problems, outs)]
    return {"problems": len(problems), "samples_per_problem": n, "temperature": temperature,
            "pass@1": round(sum(pass_at_n(c, 1) for c in correct) / len(correct), 4),
            "pass@4": round(sum(pass_at_n(c, 4) for c in correct) / len(correct), 4),
            f"pass@{n}": round(sum(pass_at_n(c, n) for c in correct) / len(correct), 4),
            "sampling_s": round(wall, 1)}


def heldout_subsets(run: Path, folder: Path, task, rationale_format: str) -> dict:
    records = load_sft_jsonl(folder / "heldout.jsonl", kinds=["verify_direct"])
    scores = [json.loads(line) for line in (run / SCORES_FILE).read_text().splitlines()]
    cot = (run / RATIONALES_FILE).is_file()  # GenRM direct writes none
    rationales = ([json.loads(line) for line in (run / RATIONALES_FILE).read_text().splitlines()] if cot
                  else [{"rationales": []}] * len(records))
    policy = {(s["problem_id"], s["solution"].strip()) for s in map(json.loads, (folder / "samples.jsonl").read_text().splitlines())}
    out = {}
    for name, keep in (("policy_samples", True), ("all_pairs", None)):
        rows = []
        for r, s, x in zip(records, scores, rationales):
            question, solution = prompts.parse_verify_direct_prompt(r.task, r.prompt)
            if keep is None or ((r.problem_id, solution.strip()) in policy) == keep:
                rows.append((r, s, x, question, solution))
        labels = [s["label"] for _, s, _, _, _ in rows]
        values = [s["score"] for _, s, _, _, _ in rows]
        by_problem: dict[str, list[int]] = {}
        for i, (r, *_rest) in enumerate(rows):
            by_problem.setdefault(r.problem_id, []).append(i)
        within, both = within_problem_auroc([[values[i] for i in ix] for ix in by_problem.values()],
                                            [[labels[i] for i in ix] for ix in by_problem.values()])
        agreement = (line_agreement(task, [(q, sol, x["rationales"]) for _, _, x, q, sol in rows], rationale_format)
                     if cot else None)
        out[name] = {"pairs": len(rows), "right": sum(labels),
                     "auroc": round(auroc(values, labels), 4) if 0 < sum(labels) < len(labels) else None,
                     "within_problem_auroc": None if within is None else round(within, 4), "problems_with_both": both,
                     "accuracy": round(sum((v > 0.5) == y for v, y in zip(values, labels)) / max(1, len(rows)), 4),
                     "line_agreement": agreement}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    summary = json.loads((args.run / "summary.json").read_text())
    folder = Path(summary["data"]["folder"])
    build = json.loads((folder / "build_config.json").read_text())
    t = build["task"]
    task = get_task(t["name"], t.get("options"))
    heldout = task.generate("validation", t["n_heldout"], seed=t["seed"])
    rationale_format = build.get("rationale_format", "quoted")
    s = build["sampling"]
    result = {
        "command": "python experiments/checkable-tasks-smollm2/measure.py " + " ".join(sys.argv[1:]),
        "run": str(args.run),
        "task": t["name"], "options": t.get("options", {}),
        "policy": policy_pass_at(task, heldout, summary["data"]["policy"], args.samples, s["temperature"], s["max_tokens"],
                                 s.get("engine_options", {})),
        "policy_accuracy_heldout_build": summary["data"].get("policy_accuracy_heldout"),
        "rationale_format": rationale_format,
        "genrm_mode": "cot" if (args.run / RATIONALES_FILE).is_file() else "direct",
        "genrm": heldout_subsets(args.run, folder, task, rationale_format),
        "genrm_train": {"steps": summary["steps"], "tokens_per_s": summary["train_tokens_per_s"],
                        "final_loss": summary["final_loss"]},
        "wall_s": summary["wall_s"],
        "machine": machine_record(),
        "date": time.strftime("%Y-%m-%d"),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
