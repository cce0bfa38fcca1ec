"""Framework adapters (genrm_ray/integrations): TRL, OpenRLHF, veRL.

Served rewards come from the session's ONE reward app (``reward_server``, tests/fixtures/serving.py,
bearer auth on). Every adapter's rewards are compared with a direct POST to /v1/rewards of the same
(prompt, response) pairs. Each framework is called the way its own source calls a reward function;
the source read is named at each test:

- TRL 1.16.0 (installed): trl/trainer/grpo_trainer.py ``GRPOTrainer._calculate_rewards`` - the real
  trainer runs here.
- OpenRLHF (github.com/OpenRLHF/OpenRLHF at 3c3be62, 2026-08): openrlhf/utils/agent.py
  ``SingleTurnAgentExecutor`` (loads the file, calls ``reward_func([query], [prompt], [label])`` in a
  thread, posts ``{"query", "prompts", "labels"}`` to an HTTP endpoint),
  openrlhf/trainer/ppo_utils/samples_generator.py ``_process_response_into_experience`` (how the
  result is consumed); before 62987083 (2026-01): openrlhf/utils/remote_rm_utils.py (micro-batches).
- veRL (github.com/volcengine/verl at b178a3c, 2026-01): verl/trainer/ppo/reward.py
  ``get_custom_reward_fn`` (load by path, reward_kwargs merged into every call),
  verl/utils/import_utils.py ``load_module``, verl/workers/reward_manager/naive.py and batch.py,
  verl/experimental/reward_loop/reward_loop.py ``compute_score_batch`` +
  reward_manager/naive.py ``run_single``. veRL is not installed (it pins transformers < 5.11).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os

import numpy as np
import pytest
import requests
import torch

import genrm_ray.integrations.openrlhf as openrlhf_adapter
import genrm_ray.integrations.verl as verl_adapter
from genrm_ray import prompts
from genrm_ray.integrations.trl import AsyncGenRMReward, GenRMReward
from genrm_ray.reward_client import RewardClient, RewardServiceError
from genrm_ray.tasks import get_task
from tests.fixtures.ray_cluster import free_port

TASK = "last_letter"


def rows(n_problems: int, per_problem: int, seed: int) -> list[tuple[str, str, str, str]]:
    """(solve prompt, response, answer, question) with varied candidate responses; each test takes
    its own seed of the train split, so its pairs are new to the session's server (no cache hits)."""
    import random

    task, rng = get_task(TASK), random.Random(seed)
    out = []
    for p in task.generate("train", n_problems, seed=seed):
        for c in task.candidate_solutions(p, per_problem, rng):
            out.append((prompts.solve_prompt(TASK, p.question), c.solution, p.answer, p.question))
    return out


def served(server, prompts_, responses, mode: str, k: int | None = None) -> list[float]:
    """The endpoint's rewards. ``return_rationales`` makes this a different cache entry than the
    adapters' requests (serve_test.yaml caches), so the server scores the pairs again for it."""
    body = {"items": [{"prompt": p, "response": r} for p, r in zip(prompts_, responses)], "mode": mode,
            "return_rationales": True}
    if k is not None:
        body["k"] = k
    r = requests.post(server.base_url + "/v1/rewards", json=body, headers=server.headers, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["rewards"]


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/genrm"  # nothing listens there


@pytest.fixture
def reward_env(reward_server, monkeypatch):
    """The GENRM_REWARD_* environment an OpenRLHF / veRL job would set (docs/rl.md)."""
    monkeypatch.setenv("GENRM_REWARD_URL", reward_server.base_url)
    monkeypatch.setenv("GENRM_REWARD_TOKEN", reward_server.token)
    monkeypatch.setenv("GENRM_REWARD_MODE", "direct")
    for name in ("GENRM_REWARD_K", "GENRM_REWARD_TASK", "GENRM_REWARD_ADAPTIVE", "GENRM_EOS_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    return reward_server


# ------------------------------------------------------------------------------------------------
# TRL


class Recording:
    """Remembers what TRL passed and what the reward function returned, call by call."""

    def __init__(self):
        self.calls: list[tuple[list, list, list[float]]] = []

    def record(self, prompts_, completions, rewards):
        self.calls.append((list(prompts_), list(completions), list(rewards)))
        return rewards


class RecordedReward(GenRMReward):
    def __init__(self, recording: Recording, **kw):
        super().__init__(**kw)
        self.recording = recording

    def __call__(self, prompts, completions, **kwargs):
        return self.recording.record(prompts, completions, super().__call__(prompts, completions, **kwargs))


class RecordedAsyncReward(AsyncGenRMReward):
    def __init__(self, recording: Recording, **kw):
        super().__init__(**kw)
        self.recording = recording

    async def __call__(self, prompts, completions, **kwargs):
        return self.recording.record(prompts, completions, await super().__call__(prompts, completions, **kwargs))


@pytest.mark.slow
def test_trl_grpo_trainer_logs_the_endpoints_rewards(reward_server, tiny_model_dir, tmp_path):
    """TRL's real GRPOTrainer (CPU, tiny policy, no vLLM) trains 3 steps with two GenRM rewards, a
    sync one (direct) and an async one (CoT, K=2); each step's logged rewards/<name>/mean is the mean
    of what the function returned, and those rewards are the endpoint's for the same completions."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    problems = get_task(TASK).generate("train", 6, seed=0)
    data = Dataset.from_list([{"prompt": prompts.solve_prompt(TASK, p.question), "answer": p.answer} for p in problems])
    direct_rec, cot_rec = Recording(), Recording()
    auth = dict(url=reward_server.base_url, token=reward_server.token)
    direct = RecordedReward(direct_rec, name="genrm_direct", mode="direct", **auth)
    cot = RecordedAsyncReward(cot_rec, name="genrm_cot", mode="cot", k=2, **auth)
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), use_cpu=True, max_steps=3, per_device_train_batch_size=4,
                      num_generations=2, max_completion_length=24, temperature=1.0, beta=0.0, learning_rate=1e-4,
                      logging_steps=1, report_to="none", save_strategy="no", seed=0, bf16=False,
                      dataloader_num_workers=0)
    trainer = GRPOTrainer(model=str(tiny_model_dir), reward_funcs=[direct, cot], args=args, train_dataset=data)
    trainer.train()

    logs = [h for h in trainer.state.log_history if "rewards/genrm_direct/mean" in h]
    assert len(logs) == 3 and len(direct_rec.calls) == 3 and len(cot_rec.calls) == 3
    scored = 0
    for name, rec, mode, k in (("genrm_direct", direct_rec, "direct", None), ("genrm_cot", cot_rec, "cot", 2)):
        for log, (ps, cs, rewards) in zip(logs, rec.calls):
            assert len(rewards) == 4  # 2 prompts x 2 generations
            assert log[f"rewards/{name}/mean"] == pytest.approx(sum(rewards) / len(rewards), abs=1e-5)
            keep = [i for i, c in enumerate(cs) if c.strip()]
            assert all(rewards[i] == 0.0 for i in range(len(cs)) if i not in keep)  # blank_reward
            if keep:
                expected = served(reward_server, [ps[i] for i in keep], [cs[i] for i in keep], mode, k)
                assert [rewards[i] for i in keep] == pytest.approx(expected, abs=1e-4)
                scored += len(keep)
        assert f"{name}/k_used" in logs[0]  # the adapter's log_metric reached TRL's logs
    assert scored >= 12  # most of the 24 completions were really scored, not blank
    direct_rewards = [r for *_, rewards in direct_rec.calls for r in rewards]
    assert len({round(r, 6) for r in direct_rewards}) > 3  # rewards differ per completion: the comparison means something
    assert logs[0]["genrm_cot/k_used"] > 0


@pytest.mark.slow
def test_trl_reward_accepts_conversational_rows(reward_server):
    data = rows(2, 2, seed=101)
    auth = dict(url=reward_server.base_url, token=reward_server.token, mode="direct")
    standard = GenRMReward(**auth)([p for p, *_ in data], [r for _, r, *_ in data])
    conv_prompts = [[{"role": "system", "content": "Be careful."}, {"role": "user", "content": q}] for *_, q in data]
    conv_completions = [[{"role": "assistant", "content": r}] for _, r, *_ in data]
    conversational = asyncio.run(AsyncGenRMReward(**auth)(conv_prompts, conv_completions, answer=[a for *_, a, _ in data]))
    # The conversational prompt carries the bare question; the server recovers the same question
    # from the solve prompt, so both score the same verification prompt.
    assert conversational == pytest.approx(standard, abs=1e-4)
    assert standard == pytest.approx(served(reward_server, [q for *_, q in data], [r for _, r, *_ in data], "direct"), abs=1e-4)


def test_trl_reward_rejects_what_it_cannot_verify():
    reward = GenRMReward(url=dead_url())  # never reached: the rows fail first
    with pytest.raises(TypeError, match=r"prompts\[0\]: message content must be text"):
        reward([[{"role": "user", "content": [{"type": "image"}]}]], [[{"role": "assistant", "content": "x"}]])
    with pytest.raises(ValueError, match=r"completions\[0\]: expected only assistant messages"):
        reward([[{"role": "user", "content": "q"}]], [[{"role": "tool", "content": "x"}]])
    with pytest.raises(ValueError, match=r"prompts\[0\]: conversational prompt has no user message"):
        reward([[{"role": "system", "content": "q"}]], [[{"role": "assistant", "content": "x"}]])
    with pytest.raises(TypeError, match=r"two strings \(standard format\) or two message lists"):
        reward(["q"], [[{"role": "assistant", "content": "x"}]])
    with pytest.raises(ValueError, match="give either client or RewardClient options"):
        GenRMReward(RewardClient(url=dead_url()), mode="direct")


def test_trl_rewards_raise_when_the_service_is_down():
    options = dict(url=dead_url(), retries=1, backoff_s=0.01, timeout_s=5)
    with pytest.raises(RewardServiceError, match="no reward after 2 attempts"):
        GenRMReward(**options)(["Q: a b"], ["The answer is x."])
    with pytest.raises(RewardServiceError, match="no reward after 2 attempts"):
        asyncio.run(AsyncGenRMReward(**options)(["Q: a b"], ["The answer is x."]))


def test_trl_sees_the_async_variant_as_async_and_both_names():
    from trl.trainer.utils import get_callable_name, is_async_callable

    sync, asy = GenRMReward(url=dead_url(), name="genrm_sync"), AsyncGenRMReward(url=dead_url())
    assert not is_async_callable(sync) and is_async_callable(asy)
    assert get_callable_name(sync) == "genrm_sync" and get_callable_name(asy) == "genrm"


# ------------------------------------------------------------------------------------------------
# OpenRLHF


def load_openrlhf_reward_func():
    """As openrlhf/utils/agent.py SingleTurnAgentExecutor.__init__ loads ``--reward.remote_url x.py``."""
    path = openrlhf_adapter.__file__
    assert path.endswith(".py")
    spec = importlib.util.spec_from_file_location("reward_func", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def openrlhf_queries(tokenizer, data) -> list[str]:
    """query = hf_tokenizer.decode(prompt ids + action ids, skip_special_tokens=False), the prompt
    tokenized with add_special_tokens=False and the action ending in EOS (vLLM keeps it)."""
    out = []
    for prompt, response, *_ in data:
        prompt_ids = tokenizer(text=prompt, add_special_tokens=False)["input_ids"]
        action_ids = tokenizer(text=response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append(tokenizer.decode(prompt_ids + action_ids, skip_special_tokens=False))
    return out


@pytest.mark.slow
def test_openrlhf_reward_func_file_scores_like_the_endpoint(reward_env, tiny_model_dir):
    from transformers import AutoTokenizer

    reward_func = load_openrlhf_reward_func()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = rows(2, 3, seed=102)
    queries, prompts_, labels = openrlhf_queries(tokenizer, data), [d[0] for d in data], [d[2] for d in data]
    assert all(q.endswith(tokenizer.eos_token) for q in queries)
    expected = served(reward_env, prompts_, [d[1] for d in data], "direct")

    # Current OpenRLHF: one sample per call, each in a thread (asyncio.to_thread), results gathered.
    async def per_sample():
        return await asyncio.gather(*(asyncio.to_thread(reward_func, [q], [p], [label])
                                      for q, p, label in zip(queries, prompts_, labels)))

    for info, want in zip(asyncio.run(per_sample()), expected):
        assert set(info) == {"rewards", "scores", "extra_logs"}
        # samples_generator.py: info["reward"] = torch.tensor([reward_val]); extra logs flatten()[0].item()
        assert torch.tensor([info["rewards"]]).shape == (1,) and torch.tensor([info["scores"]]).shape == (1,)
        assert torch.tensor([info["rewards"]]).item() == pytest.approx(want, abs=1e-4)
        assert {k: v.flatten()[0].item() for k, v in info["extra_logs"].items()} == {
            "k_used": 1.0, "rationale_tokens": 0.0, "unfinished": 0.0, "blank": 0.0}

    # OpenRLHF before 2026: one call per micro-rollout batch (remote_rm_utils.py).
    batch = reward_func(queries, prompts_, labels)
    assert batch["rewards"].dtype == torch.float32 and batch["rewards"].shape == (len(data),)
    assert batch["rewards"].tolist() == pytest.approx(expected, abs=1e-4)
    assert torch.equal(batch["scores"], batch["rewards"])


@pytest.mark.slow
def test_openrlhf_get_reward_route_takes_the_exact_openrlhf_request(reward_env, tiny_model_dir):
    """The body agent.py ``_fetch_rewards_via_http`` posts. OpenRLHF sends no Authorization header:
    the test server has auth on, so the token is added here (docs/rl.md: run without a token, or
    use the reward_func file, which sends it)."""
    import aiohttp
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = rows(2, 2, seed=103)
    queries = openrlhf_queries(tokenizer, data)
    payload = {"query": queries, "prompts": [d[0] for d in data], "labels": [d[2] for d in data]}

    async def post(headers):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
            async with session.post(reward_env.base_url + "/get_reward", json=payload, headers=headers) as r:
                return r.status, await r.json()

    status, _ = asyncio.run(post({}))
    assert status == 401
    status, reply = asyncio.run(post(reward_env.headers))
    assert status == 200
    assert reply["rewards"] == pytest.approx(served(reward_env, payload["prompts"], [d[1] for d in data], "direct"), abs=1e-4)
    assert reply["scores"] == reply["rewards"] and set(reply["extra_logs"]) == {"k_used", "rationale_tokens", "unfinished"}
    func = load_openrlhf_reward_func()(queries, payload["prompts"], payload["labels"])
    assert func["rewards"].tolist() == pytest.approx(reply["rewards"], abs=1e-4)


def test_openrlhf_reward_func_handles_eos_only_and_rejects_foreign_queries(monkeypatch):
    monkeypatch.setenv("GENRM_REWARD_URL", dead_url())  # never reached: nothing to score / bad input
    reward_func = load_openrlhf_reward_func()
    out = reward_func(["P: </s>", "P:\n<|im_end|><pad>"], ["P:", "P:"], [None, None])
    assert out["rewards"].tolist() == [0.0, 0.0] and out["extra_logs"]["blank"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"queries\[1\] does not start with prompts\[1\]"):
        reward_func(["P: a", "X: b"], ["P:", "P:"], ["a", "b"])
    with pytest.raises(ValueError, match="labels has 1 entries but queries has 2"):
        reward_func(["P: a", "P: b"], ["P:", "P:"], ["a"])
    monkeypatch.setenv("GENRM_EOS_TOKENS", "<END>")
    assert openrlhf_adapter.response_of("P: x <END>\n<END>", "P:", 0, openrlhf_adapter.eos_tokens()) == " x"
    monkeypatch.delenv("GENRM_REWARD_URL")
    with pytest.raises(RuntimeError, match="GENRM_REWARD_URL is not set"):
        reward_func(["P: a"], ["P:"], ["a"])


def test_openrlhf_reward_func_raises_when_the_service_is_down(monkeypatch):
    monkeypatch.setenv("GENRM_REWARD_URL", dead_url())
    monkeypatch.setenv("GENRM_REWARD_RETRIES", "1")
    with pytest.raises(RewardServiceError, match="no reward after 2 attempts"):
        load_openrlhf_reward_func()(["P: a</s>"], ["P:"], ["a"])


# ------------------------------------------------------------------------------------------------
# veRL


def load_verl_function(name: str, reward_kwargs: dict):
    """As verl/trainer/ppo/reward.py get_custom_reward_fn does: load the file by path under a
    private module name (import_utils.load_module), then bind reward_kwargs so that they are merged
    into every call's keyword arguments; an async function stays a coroutine function."""
    path = os.path.abspath(verl_adapter.__file__)
    spec = importlib.util.spec_from_file_location(f"custom_module_{hash(path)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = getattr(module, name)

    def call(*args, **kwargs):
        return raw(*args, **{**kwargs, **reward_kwargs})

    async def acall(*args, **kwargs):
        return await raw(*args, **{**kwargs, **reward_kwargs})

    fn = acall if inspect.iscoroutinefunction(raw) else call
    return module, fn


def verl_extra_info(question: str) -> dict:
    # The dataset's extra_info (as veRL's examples/data_preprocess/gsm8k.py builds it) plus what the
    # managers add before the call (num_turns, rollout_reward_scores).
    return {"split": "test", "index": 0, "question": question, "num_turns": None, "rollout_reward_scores": {}}


@pytest.mark.slow
def test_verl_naive_batch_and_reward_loop_shapes_score_like_the_endpoint(reward_server):
    data = rows(2, 3, seed=104)
    kwargs = {"url": reward_server.base_url, "token": reward_server.token, "mode": "direct"}
    expected = served(reward_server, [d[3] for d in data], [d[1] for d in data], "direct")

    # verl/workers/reward_manager/naive.py: one keyword call per sample.
    _, compute_score = load_verl_function("compute_score", kwargs)
    naive = [compute_score(data_source=TASK, solution_str=r, ground_truth=a, extra_info=verl_extra_info(q))
             for _, r, a, q in data]
    assert [x["score"] for x in naive] == pytest.approx(expected, abs=1e-4)
    assert all(isinstance(x["score"], float) and x["k_used"] == 1 and not x["blank"] for x in naive)

    # verl/workers/reward_manager/batch.py: non-tensor batch fields are numpy object arrays.
    _, compute_batch = load_verl_function("compute_score_batch", kwargs)
    batch = compute_batch(data_sources=np.array([TASK] * len(data), dtype=object), solution_strs=[d[1] for d in data],
                          ground_truths=[d[2] for d in data],
                          extra_infos=np.array([verl_extra_info(d[3]) for d in data], dtype=object))
    assert [x["score"] for x in batch] == pytest.approx(expected, abs=1e-4)

    # verl/experimental/reward_loop: one task per sample, gathered; the manager awaits the function
    # because inspect.iscoroutinefunction(fn) is true, and adds reward_router_address /
    # reward_model_tokenizer when a reward-model router runs.
    module, compute_async = load_verl_function("compute_score_async", {**kwargs, "reward_router_address": None})
    assert inspect.iscoroutinefunction(compute_async)

    async def reward_loop():
        tasks = [asyncio.create_task(compute_async(data_source=TASK, solution_str=r, ground_truth=a,
                                                   extra_info=verl_extra_info(q))) for _, r, a, q in data]
        return await asyncio.gather(*tasks), module.gatherer_requests()

    results, requests_made = asyncio.run(reward_loop())
    assert [x["score"] for x in results] == pytest.approx(expected, abs=1e-4)
    assert requests_made == 1  # the samples went to the server together


def test_verl_functions_fail_clearly_without_the_question_or_with_unknown_options():
    kwargs = {"url": dead_url()}  # never reached
    with pytest.raises(ValueError, match=r"extra_info has no text 'question' \(found \['index', 'split'\]\)"):
        verl_adapter.compute_score(TASK, "The answer is ab.", "ab", {"split": "test", "index": 3}, **kwargs)
    with pytest.raises(ValueError, match=r"sample 1: .*extra_info has no text 'problem'"):
        verl_adapter.compute_score_batch([TASK] * 2, ["a", "b"], ["a", "b"], [{"problem": "q"}, None],
                                         question_key="problem", **kwargs)
    with pytest.raises(TypeError, match=r"unknown custom_reward_function.reward_kwargs \['modee'\]"):
        verl_adapter.compute_score(TASK, "x", "y", {"question": "q"}, modee="cot", **kwargs)
    blank = verl_adapter.compute_score(TASK, "  ", "y", {"question": "q"}, **kwargs)
    assert blank["score"] == 0.0 and blank["blank"]


def test_verl_functions_raise_when_the_service_is_down():
    kwargs = {"url": dead_url(), "retries": 1, "backoff_s": 0.01}
    info = verl_extra_info("Take the last letters of the words in \"ab cd\" and concatenate them.")
    with pytest.raises(RewardServiceError, match="no reward after 2 attempts"):
        verl_adapter.compute_score(TASK, "The answer is bd.", "bd", info, **kwargs)
    with pytest.raises(RewardServiceError):
        verl_adapter.compute_score_batch([TASK], ["The answer is bd."], ["bd"], [info], **kwargs)

    async def reward_loop():
        calls = [verl_adapter.compute_score_async(TASK, f"The answer is {x}.", "bd", info, **kwargs) for x in ("bd", "bc")]
        return await asyncio.gather(*calls, return_exceptions=True)

    errors = asyncio.run(reward_loop())
    assert all(isinstance(e, RewardServiceError) for e in errors)  # every waiting sample, none a reward
