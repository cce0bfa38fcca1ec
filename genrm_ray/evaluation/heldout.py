"""Held-out verification of one trained verifier: accuracy and AUROC of its score on labelled
(x, y) pairs (the training job's last step), over all pairs and within each problem; and the paired
comparison of runs scored on the same pairs:

    python -m genrm_ray.evaluation.heldout runs/baseline runs/variant [runs/variant2 ...]

prints each variant against the first run (AUROC differences with 95% CIs that resample problems),
from the ``heldout_scores.jsonl`` each training run writes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from genrm_ray import prompts
from genrm_ray.data.sft import SFTRecord, load_sft_jsonl
from genrm_ray.evaluation.rationales import line_agreement
from genrm_ray.stats import auroc, paired_auroc_bootstrap, within_problem_auroc
from genrm_ray.tasks import get_task

SCORES_FILE = "heldout_scores.jsonl"  # per pair, in the training run's directory
RATIONALES_FILE = "heldout_rationales.jsonl"  # GenRM-CoT: each pair's sampled rationales, beside it


def evaluate_verifier(model_dir: str | Path, heldout: str | Path, backend: str = "vllm", cot=None,
                      scores_out: str | Path | None = None, rationale_format: str = "quoted",
                      **options) -> dict[str, Any]:
    """Accuracy (score > 0.5 vs the label) and AUROC on a held-out verify_direct file.

    ``within_problem_auroc`` is the mean AUROC among each problem's own pairs, over the problems with
    both a right and a wrong one: the ranking Best-of-N needs. The whole-set AUROC also rewards a
    verifier that only knows which problems are easy (docs/evaluation.md).

    The score is a GenRM's raw p(" Yes") (as in the paper), or the discriminative RM's sigmoid, chosen
    by the saved model's architecture. With ``cot`` (scoring.CotConfig) a GenRM-CoT is scored the
    way it is used: K sampled rationales per pair, reward = mean p(Yes); the share of rationales cut at
    the budget is reported too, with the rationales' line agreement with the programmatic ones in
    ``rationale_format`` (the training data's) where the task writes such lines. ``scores_out`` gets
    each pair's score (write_pair_scores), so that runs scored on the same file can be compared pair
    by pair (compare_runs).
    """
    from genrm_ray.scoring import DiscriminativeScorer, GenRMScorer, VerifyItem, is_classifier_dir

    records = load_sft_jsonl(heldout, kinds=["verify_direct"])
    labels = [bool(r.label) for r in records]
    texts = [r.prompt for r in records]
    extra: dict[str, Any] = {}
    if is_classifier_dir(str(model_dir)):
        scores = DiscriminativeScorer(str(model_dir)).p_correct(texts)
    else:
        from genrm_ray.engine import make_backend

        engine = make_backend(backend, str(model_dir), **options)
        try:
            if cot is None:
                scores = GenRMScorer(engine).p_yes(texts)
            else:
                items = [VerifyItem(r.task, *prompts.parse_verify_direct_prompt(r.task, r.prompt)) for r in records]
                results = GenRMScorer(engine).score_cot(items, cot, return_rationales=True)
                scores = [x.reward for x in results]
                drawn = sum(x.k_used for x in results)
                extra = {"cot_k": cot.k, "cot_temperature": cot.temperature,
                         "unfinished_share": round(sum(x.unfinished for x in results) / drawn, 4)}
                agreement = line_agreement(get_task(records[0].task),
                                           [(i.question, i.solution, x.rationales) for i, x in zip(items, results)],
                                           rationale_format)
                if agreement is not None:
                    extra["line_agreement"] = agreement
                if scores_out is not None:  # the rationales beside the scores, for reading them
                    with (Path(scores_out).parent / RATIONALES_FILE).open("w") as f:
                        for r, x in zip(records, results):
                            f.write(json.dumps({"problem_id": r.problem_id, "label": bool(r.label), "p_yes": x.p_yes,
                                                "rationales": x.rationales}) + "\n")
        finally:
            if hasattr(engine, "close"):
                engine.close()  # vLLM's engine-core process goes now, not at interpreter exit
    if scores_out is not None:
        write_pair_scores(scores_out, records, scores)
    accuracy = sum((p > 0.5) == y for p, y in zip(scores, labels)) / len(labels)
    by_problem: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_problem.setdefault(r.problem_id, []).append(i)
    within, problems_with_both = within_problem_auroc([[scores[i] for i in ix] for ix in by_problem.values()],
                                                      [[labels[i] for i in ix] for ix in by_problem.values()])
    return {**extra,
        "n": len(labels),
        "positives": sum(labels),
        "accuracy": round(accuracy, 4),
        "auroc": round(auroc(scores, labels), 4),
        "within_problem_auroc": None if within is None else round(within, 4),
        "problems_with_both": problems_with_both,
        "mean_score_correct": round(sum(p for p, y in zip(scores, labels) if y) / max(1, sum(labels)), 4),
        "mean_score_wrong": round(sum(p for p, y in zip(scores, labels) if not y) / max(1, len(labels) - sum(labels)), 4),
    }


def _pair_key(record: SFTRecord) -> str:
    return hashlib.sha1(record.prompt.encode()).hexdigest()[:16]


def write_pair_scores(path: str | Path, records: list[SFTRecord], scores: list[float]) -> None:
    """One JSON line per held-out pair: problem, label, score and a hash of the prompt."""
    with Path(path).open("w") as f:
        for r, score in zip(records, scores):
            f.write(json.dumps({"problem_id": r.problem_id, "label": bool(r.label), "score": float(score),
                                "prompt_sha1": _pair_key(r)}) + "\n")


def read_pair_scores(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (training runs write {SCORES_FILE} in their run directory)")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            rows.append({"problem_id": str(row["problem_id"]), "label": bool(row["label"]), "score": float(row["score"]),
                         "prompt_sha1": str(row["prompt_sha1"])})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{lineno}: not a held-out score line ({e!r})") from None
    if not rows:
        raise ValueError(f"{path}: no score lines")
    return rows


def compare_runs(base: str | Path, variant: str | Path, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """AUROC and within-problem AUROC of ``variant`` minus ``base`` on the same held-out pairs."""
    a, b = read_pair_scores(variant), read_pair_scores(base)
    if [r["prompt_sha1"] for r in a] != [r["prompt_sha1"] for r in b]:
        raise ValueError(f"{variant} and {base} were not scored on the same held-out pairs in the same order "
                         "(different data folders?): no paired comparison")
    diffs = paired_auroc_bootstrap([r["score"] for r in a], [r["score"] for r in b], [r["label"] for r in a],
                                   [r["problem_id"] for r in a], resamples=resamples, seed=seed)
    out: dict[str, Any] = {"pairs": len(a)}
    for name, d in diffs.items():
        out[name] = None if d is None else {"diff": round(d.diff, 4), "low": round(d.low, 4), "high": round(d.high, 4),
                                            "problems": d.n, "excludes_zero": d.excludes_zero}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Paired held-out AUROC differences of training runs against the first.")
    parser.add_argument("runs", nargs="+", help="run directories (or heldout_scores.jsonl files); the first is the base")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("name a base run and at least one variant")
    try:
        results = {v: compare_runs(args.runs[0], v, args.resamples) for v in args.runs[1:]}
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"base": args.runs[0], "variants": results}, indent=2))
        return 0
    print(f"variant minus {args.runs[0]} (95% CI, problems resampled)")
    print("| variant | AUROC | within-problem AUROC |\n|---|---|---|")
    for v, r in results.items():
        cells = [("n/a" if r[k] is None else f"{r[k]['diff']:+.3f} [{r[k]['low']:+.3f}, {r[k]['high']:+.3f}]")
                 for k in ("auroc", "within_problem_auroc")]
        print(f"| {v} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
