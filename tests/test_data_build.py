"""The GenRM data build's pieces that need no model (genrm_ray.data.build): hard negatives from the
adversarial suite, their share and labels, and the cache key."""

from __future__ import annotations

import pytest

from genrm_ray import prompts
from genrm_ray.config import ConfigError
from genrm_ray.data import sft
from genrm_ray.data.build import DataBuildConfig, cache_key, check_hard_negative_share, mix_hard_negatives
from genrm_ray.data.sft import LabelledSolution
from genrm_ray.tasks import get_task


def clean_sets(task, problems):
    pool = [LabelledSolution(p, c.solution, c.correct) for p in problems
            for c in task.candidate_solutions(p, 4, __import__("random").Random(0))]
    verify = sft.build_verify_direct(pool, balance=True)
    cot, _ = sft.build_verify_cot(pool, task.verification_rationale, balance=True)
    return verify, cot


@pytest.mark.parametrize("share", [0.1, 0.25])
def test_hard_negatives_are_the_stated_share_labelled_no_on_train_problems(share):
    task = get_task("arithmetic")
    train = task.generate("train", 12, seed=0)
    verify, cot = clean_sets(task, train)
    mixed_verify, mixed_cot, stats = mix_hard_negatives(task, train, verify, cot, share, seed=0)
    for clean, mixed, kind in ((verify, mixed_verify, "verify_direct"), (cot, mixed_cot, "verify_cot")):
        added = [r for r in mixed if r not in clean]  # (one may equal a clean wrong candidate)
        assert stats[kind] == len(mixed) - len(clean) > 0 and len(added) > 0
        assert stats[kind] / len(mixed) == pytest.approx(share, abs=0.03)
        assert all(r.label is False and r.problem_id in {p.id for p in train} for r in added)
        assert all(r.target == prompts.NO for r in added) if kind == "verify_direct" else \
            all(prompts.split_verdict(r.target)[1] is False for r in added)
    # The injected classes are there, shown as every verifier prompt shows them (neutralized).
    assert any(prompts.NEUTRALIZED in r.prompt for r in mixed_verify)
    assert not any(prompts.DIRECT_QUESTION in r.prompt[len(prompts.solve_prompt("arithmetic", "")):-len(prompts.DIRECT_QUESTION)]
                   for r in mixed_verify)


def test_share_is_checked_and_the_default_keeps_old_cache_keys():
    for bad in (-0.1, 0.6):
        with pytest.raises(ConfigError, match="data.hard_negative_share must lie in"):
            check_hard_negative_share(bad)
    with_share = DataBuildConfig(hard_negative_share=0.1)
    assert cache_key(with_share) != cache_key(DataBuildConfig())
    assert cache_key(DataBuildConfig(balance_per_problem=True)) != cache_key(DataBuildConfig())
    # A folder built before these options existed (no such keys) keeps its key while they are off.
    import hashlib
    import json

    from genrm_ray.config import to_dict
    from genrm_ray.data.build import DATA_VERSION

    d = to_dict(DataBuildConfig())
    for key in ("cache_dir", "hard_negative_share", "balance_per_problem"):
        d.pop(key)
    d["policy"]["train"].pop("logging")
    d["policy"]["train"].pop("output_dir")
    d["version"] = DATA_VERSION
    assert cache_key(DataBuildConfig()) == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
