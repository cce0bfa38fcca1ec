"""The GenRM data build's pieces that need no trained model (genrm_ray.data.build): hard negatives from
the adversarial suite, their share and labels, the cache key, problems drawn from a real file, and the
policy stage's cache folder (genrm_ray.train.policy)."""

from __future__ import annotations

import collections
import copy
import json
from pathlib import Path

import pytest

from genrm_ray import prompts
from genrm_ray.config import ConfigError, to_dict
from genrm_ray.data import sft
from genrm_ray.data.build import DataBuildConfig, cache_key, check_hard_negative_share, check_verify_balance, mix_hard_negatives
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
    assert cache_key(DataBuildConfig(rationale_format="decomposed")) != cache_key(DataBuildConfig())
    assert cache_key(DataBuildConfig(verify_balance="upsample")) != cache_key(DataBuildConfig())
    with pytest.raises(ConfigError, match="data.verify_balance must be one of downsample, upsample, got 'up'"):
        check_verify_balance("up")
    sudoku = DataBuildConfig()
    sudoku.task.name, sudoku.task.options = "mini_sudoku", {"min_empty": 4}
    harder = copy.deepcopy(sudoku)
    harder.task.options = {"min_empty": 8}
    assert cache_key(sudoku) != cache_key(harder)
    # A folder built before these options existed (no such keys) keeps its key while they are off.
    import hashlib
    import json

    from genrm_ray.config import to_dict
    from genrm_ray.data.build import DATA_VERSION

    d = to_dict(DataBuildConfig())
    for key in ("cache_dir", "hard_negative_share", "balance_per_problem", "rationale_format", "verify_balance"):
        d.pop(key)
    d["policy"]["train"].pop("logging")
    d["policy"]["train"].pop("output_dir")
    d["policy"]["train"].pop("storage")  # where the policy is written: no change to the data
    d["policy"]["train"]["data"].pop("max_verify_examples")  # added later; the policy's SFT never reads it
    d["task"].pop("file")  # added later; "" = generated problems
    d["task"].pop("options")  # added later; {} = a built-in task or a reasoning-gym task's defaults
    d["task"].pop("heldout_split")  # added later; the data build's held-out set is the validation split
    d["version"] = DATA_VERSION
    assert cache_key(DataBuildConfig()) == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    capped = DataBuildConfig()
    capped.policy.train.data.max_verify_examples = 120
    assert cache_key(capped) == cache_key(DataBuildConfig())
    stored = DataBuildConfig()
    stored.policy.train.storage = "/mnt/shared/genrm"
    assert cache_key(stored) == cache_key(DataBuildConfig())


def _gsm8k_file(path, n: int, bad_line: int = 0):
    rows = [json.dumps({"question": f"Ann has {i} apples and buys 2 more. How many does she have?",
                        "answer": f"She has {i} + 2 = <<{i}+2={i + 2}>>{i + 2} apples.\n#### {i + 2}"}) for i in range(n)]
    if bad_line:
        rows[bad_line - 1] = json.dumps({"question": "No final line", "answer": "It is 3."})
    path.write_text("\n".join(rows) + "\n")
    return path


def test_problems_drawn_from_a_file_are_disjoint_seeded_and_their_errors_name_the_file(tmp_path):
    from genrm_ray.tasks.config import TaskConfig, load_problems

    path = _gsm8k_file(tmp_path / "gsm8k.jsonl", 12)
    cfg = TaskConfig(name="gsm8k", n_train=8, n_heldout=3, file=str(path))
    train, heldout = load_problems(cfg)
    assert (len(train), len(heldout)) == (8, 3)
    assert not {p.id for p in train} & {p.id for p in heldout}
    assert [p.id for p in load_problems(cfg)[0]] == [p.id for p in train]  # seeded
    assert [p.id for p in load_problems(TaskConfig(name="gsm8k", n_train=8, n_heldout=3, file=str(path), seed=1))[0]] \
        != [p.id for p in train]
    assert get_task("gsm8k").is_correct(get_task("gsm8k").reference_solution(train[0]), train[0])
    with pytest.raises(ConfigError, match=r"^task: \S+ holds 12 distinct problems, fewer than n_train \+ n_heldout = 10 \+ 3"):
        load_problems(TaskConfig(name="gsm8k", n_train=10, n_heldout=3, file=str(path)))
    with pytest.raises(ConfigError, match="^task.file: no such file"):
        load_problems(TaskConfig(name="gsm8k", file=str(tmp_path / "missing.jsonl")))
    with pytest.raises(ConfigError, match=r"^task.file: .*bad.jsonl:3: field 'answer' must end with a line '#### <number>'"):
        load_problems(TaskConfig(name="gsm8k", n_train=2, n_heldout=1, file=str(_gsm8k_file(tmp_path / "bad.jsonl", 5, bad_line=3))))
    with pytest.raises(ConfigError, match="^task.file: task 'gsm8k' has no generator"):
        load_problems(TaskConfig(name="gsm8k"))


def test_the_heldout_split_is_checked_and_generated_from():
    from genrm_ray.tasks.config import TaskConfig, load_problems

    with pytest.raises(ConfigError, match="^data.task.heldout_split=test is reserved for Best-of-N"):
        load_problems(TaskConfig(name="arithmetic", heldout_split="test"), "data.task")
    with pytest.raises(ConfigError, match=r"^task.heldout_split: task 'gsm8k' has no split 'ood'"):
        load_problems(TaskConfig(name="gsm8k", heldout_split="ood"))
    train, ood = load_problems(TaskConfig(name="last_letter", n_train=3, n_heldout=4, heldout_split="ood"))
    task = get_task("last_letter")
    assert [p.id for p in ood] == [p.id for p in task.generate("ood", 4, seed=0)]
    assert [p.id for p in train] == [p.id for p in task.generate("train", 3, seed=0)]


def test_a_problems_file_enters_the_cache_key_by_its_content(tmp_path):
    from genrm_ray.data.build import TaskConfig, samples_key

    path = _gsm8k_file(tmp_path / "a.jsonl", 12)
    moved = tmp_path / "b.jsonl"
    moved.write_bytes(path.read_bytes())
    keyed = lambda f: cache_key(DataBuildConfig(task=TaskConfig(name="gsm8k", file=str(f))))  # noqa: E731
    assert keyed(path) == keyed(moved)
    assert samples_key(to_dict(DataBuildConfig(task=TaskConfig(name="gsm8k", file=str(path))))) == \
        samples_key(to_dict(DataBuildConfig(task=TaskConfig(name="gsm8k", file=str(moved)))))
    _gsm8k_file(moved, 11)
    assert keyed(path) != keyed(moved)


def test_a_build_that_changes_only_d_verify_reuses_the_policy_and_samples_of_a_finished_one(tmp_path, monkeypatch):
    """Folders with the same policy and sampling settings share one set of samples, so D_verify
    variants (rationale format, hard negatives, balance) are compared on the same solutions."""
    import dataclasses
    import json

    import genrm_ray.data.build as build_mod
    from genrm_ray.config import to_dict
    from genrm_ray.data.build import TaskConfig, build_or_reuse
    from genrm_ray.data.sampling import Sample

    quoted = DataBuildConfig(task=TaskConfig(name="arithmetic", n_train=8, n_heldout=4),
                             bootstrap_candidates=2, cache_dir=str(tmp_path))
    task = get_task("arithmetic")
    problems = task.generate("train", 8, seed=0) + task.generate("validation", 4, seed=0)
    finished = tmp_path / f"arithmetic-{cache_key(quoted)}"  # as a finished build leaves it
    finished.mkdir()
    (finished / "build_config.json").write_text(json.dumps(to_dict(quoted)))
    (finished / "stats.json").write_text(json.dumps({"base_model": "/base", "policy": "/policy", "sampling_s": 9.0}))
    samples = [Sample(p.id, i, task.reference_solution(p) if i == 0 else "The answer is 1.", "stop", 12)
               for p in problems for i in range(2)]
    (finished / "samples.jsonl").write_text("".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in samples))

    def must_not_run(*args, **kwargs):
        raise AssertionError("the policy or its samples were built again")

    monkeypatch.setattr(build_mod, "sample_solutions", must_not_run)
    monkeypatch.setattr(build_mod, "train_or_reuse_policy", must_not_run)
    decomposed = dataclasses.replace(quoted, rationale_format="decomposed")
    logs: list[str] = []
    built = build_or_reuse(decomposed, log=logs.append)
    assert built.folder != finished and not built.reused
    assert built.stats["samples_from"] == str(finished) and built.policy == Path("/policy")
    assert (built.folder / "samples.jsonl").read_text() == (finished / "samples.jsonl").read_text()
    assert any("reusing the policy and samples of" in line for line in logs)
    cot = [json.loads(line) for line in built.verify_cot.read_text().splitlines()]
    assert cot and any(" * " in r["target"] and r["target"].count("=") > 2 * r["target"].count("Step ") for r in cot)
    # Another sampling temperature means other samples: nothing to reuse, so it would sample.
    hotter = dataclasses.replace(quoted, sampling=dataclasses.replace(quoted.sampling, temperature=1.3))
    with pytest.raises(AssertionError, match="built again"):
        build_or_reuse(hotter)


def test_upsampling_keeps_every_item_and_balances_the_classes():
    items = [("p1", True), ("p1", False), ("p1", False), ("p1", False), ("p1", False), ("p1", False),
             ("p2", True), ("p2", True), ("p2", False), ("p3", False)]
    label, problem = (lambda x: x[1]), (lambda x: x[0])
    down = sft.balance_labels(items, seed=0, label=label)
    up = sft.balance_labels(items, seed=0, label=label, upsample=True)
    assert len(down) == 6 and sum(map(label, down)) == 3  # 3 right, 3 of the 7 wrong
    assert len(up) == 14 and sum(map(label, up)) == 7 and set(up) == set(items)  # all 7 wrong, right repeated
    per = sft.balance_labels(items, seed=0, label=label, problem=problem, upsample=True)
    counts = collections.Counter((problem(x), label(x)) for x in per)
    assert counts == {("p1", True): 5, ("p1", False): 5, ("p2", True): 2, ("p2", False): 2}  # p3: one class


def test_the_policy_stage_keeps_its_policy_in_its_own_folder_shared_by_data_builds(tmp_path):
    """The policy is made once per (task, base model, SFT settings), in its own folder: a second data
    build with other D_verify settings, or other logging, finds it; other SFT settings do not; an
    interrupted folder (no policy.json) is started over."""
    import dataclasses

    from genrm_ray.data.build import TaskConfig
    from genrm_ray.train.policy import PolicyConfig, policy_key, train_or_reuse_policy

    build = DataBuildConfig(task=TaskConfig(name="arithmetic", n_train=8, n_heldout=4),
                            policy=PolicyConfig(path=str(tmp_path / "given_policy")), cache_dir=str(tmp_path))
    logs: list[str] = []
    first = train_or_reuse_policy(build.task, build.base_model, build.policy, tmp_path, logs.append)
    folder = first.base_model.parent
    assert not first.reused and folder.parent == tmp_path / "policies" and folder.name.startswith("arithmetic-")
    assert first.policy == tmp_path / "given_policy" and (first.base_model / "config.json").is_file()
    assert json.loads((folder / "policy.json").read_text()) == first.stats == {
        "base_model": str(first.base_model), "policy": str(tmp_path / "given_policy")}

    other_logging = copy.deepcopy(build.policy)
    other_logging.train.logging.progress_bar = not other_logging.train.logging.progress_bar
    other_d_verify = dataclasses.replace(build, rationale_format="decomposed", hard_negative_share=0.2)
    assert cache_key(other_d_verify) != cache_key(build)
    again = train_or_reuse_policy(other_d_verify.task, other_d_verify.base_model, other_logging, tmp_path, logs.append)
    assert again.reused and again.policy == first.policy and again.stats == first.stats
    assert any("reusing the policy at" in line for line in logs)

    other_sft = copy.deepcopy(build.policy)
    other_sft.train.train.lr *= 2
    assert policy_key(build.task, build.base_model, other_sft) != policy_key(build.task, build.base_model, build.policy)

    (folder / "policy.json").unlink()  # as a run killed during the SFT leaves it
    (folder / "leftover").write_text("partial")
    rebuilt = train_or_reuse_policy(build.task, build.base_model, build.policy, tmp_path, logs.append)
    assert not rebuilt.reused and not (folder / "leftover").exists() and (folder / "policy.json").is_file()
