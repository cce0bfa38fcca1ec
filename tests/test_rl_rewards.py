"""The reward-source registry (genrm_ray.rl.rewards), without Ray: names, options, the errors that
list the known ones, the oracle source, and the options a GRPO config gives each source. The sources
inside the RewardActor, against the served app, are in tests/test_reward_actor.py."""

from __future__ import annotations

import asyncio
import random

import pytest

from genrm_ray import prompts
from genrm_ray.reward_client import RewardClient
from genrm_ray.rl import rewards
from genrm_ray.rl.config import GRPOConfig, RewardConfig
from genrm_ray.rl.rewards import REWARD_SOURCES, make_source, needs_reward_app, option_names, source_options
from genrm_ray.tasks import get_task

TASK = "last_letter"


def test_the_registry_is_what_a_grpo_config_may_name():
    from genrm_ray.config import ConfigError
    from genrm_ray.rl.config import check_grpo_config

    for name in [*REWARD_SOURCES, f"{__name__}:LengthSource"]:  # past the source check: the next one fails
        with pytest.raises(ConfigError, match="models.policy is required"):
            check_grpo_config(_cfg(name))
    with pytest.raises(ConfigError, match="reward.source: unknown reward source 'genrm_votes'; known: .*genrm_cot"):
        check_grpo_config(_cfg("genrm_votes"))


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
    with pytest.raises(ValueError, match=r"'oracle': missing option\(s\) \['task'\]; known: \['task', 'task_options', 'problems'\]"):
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
        "discriminative": (_cfg("discriminative"), {"model_dir": "/models/verifier", "task": TASK, "batch_size": 64}),
        "module:Class": (_cfg(f"{__name__}:LengthSource"), {"task": TASK}),
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


class LengthSource:
    """A source named by module:Class in a config: reward 1 for a response under 10 characters."""

    def __init__(self, task: str):
        self.task = task

    async def ascore(self, prompts, responses, labels=None):
        from genrm_ray.reward_client import RewardBatch

        return RewardBatch([float(len(r) < 10) for r in responses], [{} for _ in responses])


def test_a_config_may_name_a_module_class_source_and_bad_names_fail_naming_them():
    source = make_source(f"{__name__}:LengthSource", {"task": TASK})
    assert asyncio.run(source.ascore(["p", "p"], ["short", "a much longer response"])).rewards == [1.0, 0.0]
    with pytest.raises(ValueError, match="unknown reward source 'genrm'; known: .*genrm_cot.*or module:Class"):
        make_source("genrm")
    with pytest.raises(ValueError, match="cannot import 'Nope' from 'tests.test_rl_rewards'"):
        make_source(f"{__name__}:Nope")


def test_the_oracle_grades_a_reasoning_gym_task_from_the_problems_it_was_given():
    """A reasoning-gym checker needs the generated item: the run's problems, not the label alone."""
    options = {"min_empty": 4, "max_empty": 6}
    task = get_task("mini_sudoku", options)
    problems = task.generate("train", 4, seed=0)
    rng = random.Random(0)
    rows = [(prompts.solve_prompt("mini_sudoku", p.question), c.solution, p.answer, c.correct)
            for p in problems for c in task.candidate_solutions(p, 4, rng)]
    ps, rs, labels, correct = map(list, zip(*rows))
    assert any(correct) and not all(correct)
    cfg = GRPOConfig()
    cfg.task.name, cfg.task.options, cfg.reward = "mini_sudoku", options, RewardConfig(source="oracle")
    offered = source_options(cfg, problems=problems)
    assert offered["task_options"] == options and offered["problems"] == problems
    oracle = make_source("oracle", offered)
    assert asyncio.run(oracle.ascore(ps, rs, labels)).rewards == [1.0 if c else 0.0 for c in correct]
    unknown = task.generate("validation", 1, seed=0)[0]
    with pytest.raises(ValueError, match=r"prompts\[0\]: the oracle reward of reasoning-gym task 'mini_sudoku' grades only "
                                         r"the problems it was given \(4\)"):
        asyncio.run(oracle.ascore([prompts.solve_prompt("mini_sudoku", unknown.question)], [rs[0]], [unknown.answer]))
