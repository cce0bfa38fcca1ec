"""Held-out verification of one trained verifier: accuracy and AUROC of its score on labelled
(x, y) pairs (the training job's last step), over all pairs and within each problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrm_ray import prompts
from genrm_ray.data.sft import load_sft_jsonl
from genrm_ray.evaluation.metrics import auroc, within_problem_auroc


def evaluate_verifier(model_dir: str | Path, heldout: str | Path, backend: str = "vllm", cot=None,
                      **options) -> dict[str, Any]:
    """Accuracy (score > 0.5 vs the label) and AUROC on a held-out verify_direct file.

    ``within_problem_auroc`` is the mean AUROC among each problem's own pairs, over the problems with
    both a right and a wrong one: the ranking Best-of-N needs. The whole-set AUROC also rewards a
    verifier that only knows which problems are easy (docs/evaluation.md).

    The score is a GenRM's raw p(" Yes") (as in the paper), or the discriminative RM's sigmoid, chosen
    by the saved model's architecture. With ``cot`` (scoring.CotConfig) a GenRM-CoT is scored the
    way it is used: K sampled rationales per pair, reward = mean p(Yes); the share of rationales cut at
    the budget is reported too.
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
                results = GenRMScorer(engine).score_cot(items, cot)
                scores = [x.reward for x in results]
                drawn = sum(x.k_used for x in results)
                extra = {"cot_k": cot.k, "cot_temperature": cot.temperature,
                         "unfinished_share": round(sum(x.unfinished for x in results) / drawn, 4)}
        finally:
            if hasattr(engine, "close"):
                engine.close()  # vLLM's engine-core process goes now, not at interpreter exit
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
