"""The reward-source registry (genrm_ray.rl.rewards), without Ray: names, options, the errors that
list the known ones, the oracle source, and the options a GRPO config gives each source. The sources
inside the RewardActor, against the served app, are in tests/test_reward_actor.py."""

from __future__ import annotations

import asyncio
import random
import typing

import pytest

from genrm_ray import prompts
from genrm_ray.reward_client import RewardClient
from genrm_ray.rl import rewards
from genrm_ray.rl.config import GRPOConfig, RewardConfig
from genrm_ray.rl.rewards import REWARD_SOURCES, make_source, needs_reward_app, option_names, source_options
from genrm_ray.tasks import get_task

TASK = "last_letter"


def test_registry_names_are_the_config_values():
    assert sorted(REWARD_SOURCES) == sorted(typing.get_args(typing.get_type_hints(RewardConfig)["source"]))


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown reward source 'genrm'; known: \['discriminative', 'genrm_cot', "
                                         r"'genrm_direct', 'oracle'\]"):
        make_source("genrm")
    with pytest.raises(ValueError, match="unknown reward source 'serve'"):  # the old kind is no name
        option_names("serve")


def test_unknown_or_missing_option_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"'genrm_cot': unknown option\(s\) \['model_dir'\]; known: \['url', 'app_name'"):
        make_source("genrm_cot", {"url": "http://x", "model_dir": "/m"})
    # The name fixes the mode, and a direct verdict takes no voting options.
    with pytest.raises(ValueError, match=r"'genrm_direct': unknown option\(s\) \['adaptive', 'k', 'mode'\]"):
        make_source("genrm_direct", {"url": "http://x", "mode": "cot", "k": 4, "adaptive": True})
    with pytest.raises(ValueError, match=r"'oracle': missing option\(s\) \['task'\]; known: \['task'\]"):
        make_source("oracle")
    with pytest.raises(ValueError, match=r"'discriminative': missing option\(s\) \['model_dir'\]"):
        make_source("discriminative", {"task": TASK})


def test_served_sources_are_reward_clients_with_their_mode():
    cot = make_source("genrm_cot", {"url": "http://x/", "k": 4, "retries": 0})
    direct = make_source("genrm_direct", {"url": "http://x"})
    assert isinstance(cot, RewardClient) and isinstance(direct, RewardClient)
    assert (cot.mode, cot.k, cot.retries, cot.url) == ("cot", 4, 0, "http://x")
    assert (direct.mode, direct.k) == ("direct", None)
    assert "k" in option_names("genrm_cot") and "k" not in option_names("genrm_direct")


def test_register_adds_a_source_once(monkeypatch):
    monkeypatch.setattr(rewards, "REWARD_SOURCES", dict(REWARD_SOURCES))  # the test's own copy

    @rewards.register("constant")
    class Constant:
        def __init__(self, value: float = 0.5):
            self.value = value

    assert isinstance(rewards.make_source("constant", {"value": 1.0}), Constant)
    assert rewards.option_names("constant") == ["value"]
    with pytest.raises(ValueError, match="reward source 'constant' is registered twice"):
        rewards.register("constant")(Constant)
    assert "constant" not in REWARD_SOURCES


def test_oracle_grades_against_the_labels():
    task = get_task(TASK)
    rng = random.Random(0)
    rows = [(prompts.solve_prompt(TASK, p.question), c.solution, p.answer, c.correct)
            for p in task.generate("test", 3, seed=18) for c in task.candidate_solutions(p, 4, rng)]
    ps, rs, labels, correct = map(list, zip(*rows))
    assert any(correct) and not all(correct)
    oracle = make_source("oracle", {"task": TASK})
    got = asyncio.run(oracle.ascore(ps, rs, labels))
    assert got.rewards == [1.0 if c else 0.0 for c in correct]
    assert got.details[0] == {"p_yes": [got.rewards[0]], "k_used": 1, "rationale_tokens": 0, "unfinished": 0}
    with pytest.raises(ValueError, match="needs labels"):
        asyncio.run(oracle.ascore(ps, rs))
    with pytest.raises(ValueError, match=r"labels has 1 entries but prompts has 2"):
        asyncio.run(oracle.ascore(ps[:2], rs[:2], labels[:1]))
    other_task = prompts.solve_prompt("word_sort", "Sort these words: 'b', 'a'.")
    with pytest.raises(ValueError, match=r"prompts\[0\]: prompt is a solve prompt of task 'word_sort'"):
        asyncio.run(oracle.ascore([other_task], [rs[0]], [labels[0]]))


def _cfg(source: str, **reward) -> GRPOConfig:
    cfg = GRPOConfig()
    cfg.task.name = TASK
    cfg.reward = RewardConfig(source=source, **reward)
    cfg.models.verifier = "/models/verifier"
    return cfg


def test_source_options_from_a_grpo_config(monkeypatch):
    monkeypatch.setenv("GENRM_REWARD_TOKEN", "secret")
    cases = {
        "oracle": (_cfg("oracle"), {"task": TASK}),
        "discriminative": (_cfg("discriminative"), {"model_dir": "/models/verifier", "task": TASK}),
        "cot by url": (_cfg("genrm_cot", url="http://head:8000/genrm", retries=1),
                       {"task": TASK, "batch_size": 64, "retries": 1, "k": 4, "adaptive": False,
                        "url": "http://head:8000/genrm", "token": "secret"}),  # the driver's token
        "direct by app": (_cfg("genrm_direct", app_name="genrm"),
                          {"task": TASK, "batch_size": 64, "retries": 3, "app_name": "genrm"}),
    }
    for name, (cfg, want) in cases.items():
        got = source_options(cfg)
        assert got == want, name
        assert set(got) <= set(option_names(cfg.reward.source)), name  # make_source would accept them
        assert not needs_reward_app(cfg), name
    deployed = _cfg("genrm_cot")
    assert needs_reward_app(deployed)
    assert source_options(deployed, app_name="genrm-grpo")["app_name"] == "genrm-grpo"
    with pytest.raises(ValueError, match="reward.source=genrm_cot: no endpoint"):
        source_options(deployed)
