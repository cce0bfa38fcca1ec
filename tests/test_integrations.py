"""Framework adapters (genrm_ray/integrations) through the frameworks' own code, at the versions in
requirements/cpu.lock.txt: TRL 1.16.0, OpenRLHF 0.11.2, veRL 0.9.1 (the last two installed
--no-deps; docs/install.md).

Served rewards come from the session's ONE reward app (``reward_server``, tests/fixtures/serving.py,
bearer auth on). Every adapter's rewards are compared with a direct POST to /v1/rewards of the same
(prompt, response) pairs.

- TRL: the real ``GRPOTrainer`` trains with the sync and async reward functions.
- OpenRLHF: its ``SingleTurnAgentExecutor`` loads the adapter file (or posts to /get_reward) and
  scores generations; only the vLLM engine it generates with is scripted (no GPU vLLM here).
- veRL: its hydra config composed with the overrides of the documented command, its
  ``get_custom_reward_fn``, ``RewardLoopManager`` / ``RewardLoopWorker`` / ``NaiveRewardManager``
  scoring a CPU ``DataProto``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

import genrm_ray.integrations.openrlhf as openrlhf_adapter
import genrm_ray.integrations.verl as verl_adapter
from genrm_ray import prompts
from genrm_ray.integrations.trl import AsyncGenRMReward, GenRMReward
from genrm_ray.responses import response_of_query
from genrm_ray.reward_client import RewardClient, RewardServiceError
from genrm_ray.tasks import get_task
from tests.fixtures.ray_cluster import free_port

TASK = "last_letter"
REPO = Path(__file__).resolve().parent.parent


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
# OpenRLHF 0.11.2 (installed, --no-deps): its own SingleTurnAgentExecutor (openrlhf/utils/agent.py)
# loads the adapter file / posts to /get_reward and calls it after each generation, one sample per
# call; its own SamplesGenerator / Experience code shows what a missing reward turns into.


class ScriptedEngine:
    """Stands in for OpenRLHF's vLLM engine actor, which cannot run here (GPU vLLM): ``generate``
    returns the scripted response's token ids followed by EOS (vLLM keeps it), for the prompt ids
    the executor passes. Only the generation is scripted; the executor, the decode and the reward
    calls are OpenRLHF's."""

    def __init__(self, tokenizer, responses: dict[str, str]):
        self.tokenizer = tokenizer
        self.by_prompt = {tuple(tokenizer(text=p, add_special_tokens=False)["input_ids"]): r for p, r in responses.items()}

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        from types import SimpleNamespace

        text = self.by_prompt[tuple(prompt_token_ids)]
        ids = self.tokenizer(text=text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)])


def run_executor(executor, tokenizer, samples: list[tuple[str, str, str]]) -> list[dict]:
    """The samples (prompt, response, label) through ``executor.execute`` concurrently, as OpenRLHF's
    engine actor runs a batch's prompts x n_samples_per_prompt (``logprobs=None``: no correction)."""
    from types import SimpleNamespace

    engine = ScriptedEngine(tokenizer, {p: r for p, r, _ in samples})

    async def run():
        return await asyncio.gather(*(executor.execute(p, label, SimpleNamespace(max_tokens=64, logprobs=None), max_length=1024,
                                                       hf_tokenizer=tokenizer, llm_engine=engine) for p, _, label in samples))

    return asyncio.run(run())


def distinct_prompt_rows(data):
    # One response per prompt: the scripted engine looks the response up by the prompt.
    seen, out = set(), []
    for p, r, a, q in data:
        if p not in seen:
            seen.add(p)
            out.append((p, r, a, q))
    return out


@pytest.mark.slow
def test_openrlhf_executor_scores_with_the_reward_func_file(reward_env, tiny_model_dir):
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = distinct_prompt_rows(rows(5, 2, seed=102)) + [(prompts.solve_prompt(TASK, "Take the last letters of \"ab cd\"."), "", "bd", "")]
    executor = SingleTurnAgentExecutor(remote_rm_url=openrlhf_adapter.__file__)
    assert executor.reward_func is not None  # OpenRLHF loaded the file as a reward function
    outputs = run_executor(executor, tokenizer, [(p, r, a) for p, r, a, _ in data])

    expected = served(reward_env, [d[0] for d in data[:-1]], [d[1] for d in data[:-1]], "direct")
    assert [o["reward"].item() for o in outputs[:-1]] == pytest.approx(expected, abs=1e-4)
    assert all(torch.equal(o["scores"], o["reward"]) for o in outputs)
    assert outputs[-1]["reward"].item() == 0.0 and outputs[-1]["extra_logs"]["blank"].item() == 1.0  # EOS only
    assert {k: v.item() for k, v in outputs[0]["extra_logs"].items()} == {
        "k_used": 1.0, "rationale_tokens": 0.0, "unfinished": 0.0, "blank": 0.0}
    # OpenRLHF's own consumer turns each output into an Experience carrying that reward.
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    experience = SamplesGenerator._process_response_into_experience(None, outputs[0], max_len=1024)
    assert experience.rewards.tolist() == pytest.approx([expected[0]], abs=1e-4) and experience.info["k_used"].item() == 1.0


class ForwardingProxy:
    """127.0.0.1 proxy that adds the bearer token: OpenRLHF's HTTP client sends no Authorization
    header and the session's server has auth on, so this stands in for a server with auth off
    (docs/rl.md). Requests and replies pass through unchanged otherwise."""

    def __init__(self, target: str, headers: dict[str, str]):
        import threading

        from aiohttp import ClientSession, web

        async def forward(request):
            async with ClientSession() as session:
                async with session.post(target + request.path, data=await request.read(),
                                        headers={"Content-Type": "application/json", **headers}) as r:
                    return web.Response(status=r.status, body=await r.read(), content_type="application/json")

        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/{tail:.*}", forward)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.mark.slow
def test_openrlhf_executor_http_path_gets_the_get_reward_route(reward_env, tiny_model_dir):
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = distinct_prompt_rows(rows(4, 2, seed=103))
    prefix = reward_env.base_url.split("/", 3)[3]  # the route prefix, e.g. "genrm"
    proxy = ForwardingProxy(reward_env.base_url.rsplit("/" + prefix, 1)[0], reward_env.headers)
    try:
        executor = SingleTurnAgentExecutor(remote_rm_url=f"http://127.0.0.1:{proxy.port}/{prefix}/get_reward")
        assert executor.reward_func is None  # an URL: OpenRLHF posts {"query", "prompts", "labels"}
        outputs = run_executor(executor, tokenizer, [(p, r, a) for p, r, a, _ in data])
    finally:
        proxy.close()
    # /get_reward scores in the server's scoring.get_reward_mode, with K = scoring.cot.k in CoT mode.
    s = reward_env.cfg.scoring
    expected = served(reward_env, [d[0] for d in data], [d[1] for d in data], s.get_reward_mode,
                      s.cot.k if s.get_reward_mode == "cot" else None)
    # The route answers a one-sample request with one-element lists, as OpenRLHF's own
    # openrlhf/cli/serve_rm.py does; the executor passes them on as they are.
    assert all(len(o["reward"]) == 1 for o in outputs)
    assert [o["reward"][0] for o in outputs] == pytest.approx(expected, abs=1e-4)
    assert [o["scores"] for o in outputs] == [o["reward"] for o in outputs]
    assert set(outputs[0]["extra_logs"]) == {"k_used", "rationale_tokens", "unfinished"}


@pytest.mark.slow  # OpenRLHF's samples_generator imports Ray and vLLM
def test_openrlhf_executor_with_the_server_down_logs_the_url_and_what_openrlhf_does_next(monkeypatch, caplog):
    """The reward function raises after its retries and logs the endpoint and cause at ERROR;
    OpenRLHF's executor swallows the exception (INFO) and leaves the reward None; OpenRLHF's own
    batching then fails as docs/rl.md says. No server: nothing listens at the URL."""
    import logging
    from types import SimpleNamespace

    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    url = dead_url()
    monkeypatch.setenv("GENRM_REWARD_URL", url)
    monkeypatch.setenv("GENRM_REWARD_RETRIES", "1")
    executor = SingleTurnAgentExecutor(remote_rm_url=openrlhf_adapter.__file__)

    class Tokenizer:  # the executor only tokenizes and decodes; ids of characters keep this fast-tier
        eos = "</s>"

        def __call__(self, text, add_special_tokens=False, return_tensors=None):
            return {"input_ids": torch.tensor([[ord(c) for c in text]])}

        def decode(self, ids, skip_special_tokens=False):
            return "".join(chr(i) if i else self.eos for i in ids)

    class Engine:
        async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
            ids = [ord(c) for c in " The answer is bd."] + [0]
            return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text="", finish_reason="stop", logprobs=None)])

    openrlhf_log = logging.getLogger("openrlhf.utils.agent")  # OpenRLHF's logger does not propagate
    openrlhf_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            out = asyncio.run(executor.execute("Q: ab cd", "bd", SimpleNamespace(max_tokens=32, logprobs=None), 256,
                                               Tokenizer(), Engine()))
    finally:
        openrlhf_log.removeHandler(caplog.handler)
    assert out["reward"] is None and out["scores"] is None
    ours = [r for r in caplog.records if r.name == "genrm_ray.integrations.openrlhf"]
    assert len(ours) == 1 and ours[0].levelno == logging.ERROR
    assert url + "/v1/rewards" in ours[0].getMessage() and "no reward after 2 attempts" in ours[0].getMessage()
    assert "last cause: ClientConnectorError" in ours[0].getMessage()
    theirs = [r for r in caplog.records if r.name == "openrlhf.utils.agent" and "Failed to fetch reward" in r.getMessage()]
    assert [r.levelno for r in theirs] == [logging.INFO] and url in theirs[0].getMessage()

    # What OpenRLHF 0.11.2 does with it (documented in docs/rl.md): the Experience has no reward ...
    failed = SamplesGenerator._process_response_into_experience(None, out, max_len=256)
    scored = SamplesGenerator._process_response_into_experience(None, {**out, "reward": 0.5, "scores": 0.5}, max_len=256)
    assert failed.rewards is None and "reward" not in failed.info
    # ... a micro-batch that holds it after a scored sample fails to concatenate ...
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'size'"):
        Experience.concat_experiences([scored, failed], 0)
    # ... and one that starts with it loses every reward of the micro-batch, silently.
    assert Experience.concat_experiences([failed, scored], 0).rewards is None


@pytest.mark.slow
def test_openrlhf_executor_recovers_when_the_server_returns(reward_env, tiny_model_dir, monkeypatch):
    """Samples before and after an outage get their rewards: the failed one is None, no other."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = distinct_prompt_rows(rows(3, 1, seed=105))
    executor = SingleTurnAgentExecutor(remote_rm_url=openrlhf_adapter.__file__)
    rewards = []
    for i, (p, r, a, _) in enumerate(data):
        if i == 1:
            monkeypatch.setenv("GENRM_REWARD_URL", dead_url())
            monkeypatch.setenv("GENRM_REWARD_RETRIES", "0")
        rewards.append(run_executor(executor, tokenizer, [(p, r, a)])[0]["reward"])
        monkeypatch.setenv("GENRM_REWARD_URL", reward_env.base_url)
    expected = served(reward_env, [data[0][0], data[2][0]], [data[0][1], data[2][1]], "direct")
    assert rewards[1] is None
    assert [rewards[0].item(), rewards[2].item()] == pytest.approx(expected, abs=1e-4)


def test_openrlhf_reward_func_strips_eos_and_rejects_foreign_queries(monkeypatch):
    monkeypatch.setenv("GENRM_REWARD_URL", dead_url())  # never reached: nothing to score / bad input
    reward_func = openrlhf_adapter.reward_func
    out = reward_func(["P: </s>", "P:\n<|im_end|><pad>"], ["P:", "P:"], [None, None])
    assert out["rewards"].tolist() == [0.0, 0.0] and out["extra_logs"]["blank"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"queries\[1\] does not start with prompts\[1\]"):
        reward_func(["P: a", "X: b"], ["P:", "P:"], ["a", "b"])
    with pytest.raises(ValueError, match="labels has 1 entries but queries has 2"):
        reward_func(["P: a", "P: b"], ["P:", "P:"], ["a"])
    monkeypatch.setenv("GENRM_EOS_TOKENS", "<END>")
    assert response_of_query("P: x <END>\n<END></s>", "P:", 0, openrlhf_adapter.extra_eos_tokens()) == " x"
    monkeypatch.delenv("GENRM_REWARD_URL")
    with pytest.raises(RuntimeError, match="GENRM_REWARD_URL is not set"):
        reward_func(["P: a"], ["P:"], ["a"])


def documented_block(marker: str) -> str:
    """The ```bash block of docs/rl.md that contains ``marker``."""
    import re

    text = (REPO / "docs" / "rl.md").read_text()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if marker in b]
    assert len(blocks) == 1, f"docs/rl.md has {len(blocks)} bash blocks with {marker!r}"
    return blocks[0]


@pytest.mark.integration
def test_documented_ray_job_submit_passes_the_settings_to_workers(ray_cluster, tmp_path):
    """The documented ``ray job submit --runtime-env-json`` (docs/rl.md), entrypoint replaced by a
    driver that starts Ray the way OpenRLHF's train() does (its own runtime_env env_vars) and asks an
    actor (where OpenRLHF's vLLM engines call the reward function) what the adapter reads."""
    import json
    import re
    import subprocess
    import sys

    block = documented_block("--runtime-env-json")
    assert "--reward.remote_url" in block and "openrlhf.cli.train_ppo_ray" in block
    runtime_env = json.loads(re.search(r"--runtime-env-json '([^']*)'", block).group(1))
    settings = runtime_env["env_vars"]
    assert {"GENRM_REWARD_URL", "GENRM_REWARD_MODE", "GENRM_REWARD_K"} <= set(settings)
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import json, os, ray\n"
        "ray.init(runtime_env={'env_vars': {'TOKENIZERS_PARALLELISM': 'true', 'NCCL_DEBUG': 'WARN'}})  # as OpenRLHF's train()\n"
        "@ray.remote(num_cpus=0)\n"
        "class Engine:\n"
        "    def settings(self):\n"
        "        from genrm_ray.integrations.common import client_options_from_env\n"
        "        return client_options_from_env(), {k: v for k, v in os.environ.items() if k.startswith('GENRM_REWARD_')}\n"
        "print('WORKER-SEES', json.dumps(ray.get(Engine.remote().settings.remote())))\n")
    # Nothing else carries the settings: not the submitting client's environment, nor this process's,
    # which the session cluster inherited at `ray start` (tests set them only through monkeypatch).
    assert not any(k.startswith("GENRM_REWARD_") for k in os.environ), "a GENRM_REWARD_* variable leaked into the session"
    env = {**os.environ, **ray_cluster.env}
    cmd = [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", ray_cluster.dashboard_url,
           "--runtime-env-json", json.dumps(runtime_env), "--", sys.executable, str(driver)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    options, seen = json.loads(proc.stdout.split("WORKER-SEES", 1)[1].strip().splitlines()[0])
    assert seen == settings
    assert options["url"] == settings["GENRM_REWARD_URL"] and options["mode"] == settings["GENRM_REWARD_MODE"]
    assert options["k"] == int(settings["GENRM_REWARD_K"])


# ------------------------------------------------------------------------------------------------
# veRL 0.9.1 (installed, --no-deps): its hydra config (verl/trainer/config/ppo_trainer.yaml) composed
# with the documented overrides, get_custom_reward_fn loading the adapter, and the reward loop
# (RewardLoopManager -> RewardLoopWorker -> NaiveRewardManager.run_single) scoring a CPU DataProto.


def verl_overrides(**replace: str) -> list[str]:
    """The ``reward.*`` overrides of the documented veRL command, the adapter's path filled in and
    values replaced by key (e.g. the server's URL)."""
    import re

    block = documented_block("verl.trainer.main_ppo")
    out = []
    for key, value in re.findall(r"(\+?reward\.[\w.]+)=(\S+)", block):
        value = os.path.abspath(verl_adapter.__file__) if value == "$GENRM_VERL" else value
        out.append(f"{key}={replace.get(key.lstrip('+').rsplit('.', 1)[-1], value)}")
    return out


def verl_config(overrides: list[str], model_dir) -> object:
    import verl.trainer.main_ppo
    from hydra import compose, initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.trainer.main_ppo.__file__), "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=[*overrides, f"actor_rollout_ref.model.path={model_dir}",
                                                             "reward.num_workers=1"])


def verl_batch(tokenizer, data) -> object:
    """A CPU DataProto as veRL's rollout leaves it: left-padded prompt ids, right-padded response
    ids ending in EOS, their attention mask, and the parquet's non-tensor fields."""
    from verl import DataProto

    prompt_ids = [tokenizer(text=p, add_special_tokens=False)["input_ids"] for p, *_ in data]
    response_ids = [tokenizer(text=r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for _, r, *_ in data]
    lp, lr, pad = max(map(len, prompt_ids)), max(map(len, response_ids)), tokenizer.pad_token_id or 0
    prompts_t = torch.tensor([[pad] * (lp - len(x)) + x for x in prompt_ids])
    responses_t = torch.tensor([x + [pad] * (lr - len(x)) for x in response_ids])
    mask = torch.tensor([[0] * (lp - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (lr - len(r))
                         for p, r in zip(prompt_ids, response_ids)])
    return DataProto.from_dict(
        tensors={"prompts": prompts_t, "responses": responses_t, "input_ids": torch.cat([prompts_t, responses_t], 1),
                 "attention_mask": mask},
        non_tensors={"data_source": np.array([TASK] * len(data), dtype=object),
                     "reward_model": np.array([{"ground_truth": a, "style": "rule"} for *_, a, _ in data], dtype=object),
                     "extra_info": np.array([{"split": "train", "index": i, "question": q} for i, (*_, q) in enumerate(data)],
                                            dtype=object)})


def verl_rows(tokenizer, seed: int):
    """Rows whose responses survive veRL's decode (skip_special_tokens=True), plus one EOS-only response."""
    data = [d for d in rows(2, 3, seed=seed)
            if tokenizer.decode(tokenizer(text=d[1], add_special_tokens=False)["input_ids"], skip_special_tokens=True) == d[1]]
    problem = get_task(TASK).generate("train", 1, seed=seed + 1)[0]
    return data + [(prompts.solve_prompt(TASK, problem.question), "", problem.answer, problem.question)]


@pytest.mark.slow
def test_verl_reward_loop_writes_the_endpoints_rewards(reward_server, ray_cluster, tiny_model_dir):
    """The documented command's overrides (compute_score_async, CoT K=4) through veRL's trainer
    call ``RewardLoopManager(config).compute_rm_score(batch)``: one Ray actor (RewardLoopWorker) on
    the session's cluster; the reward sits at each response's last valid token. The token goes in
    reward_kwargs here because the actor's environment is the cluster's, not this process's."""
    import ray
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop import RewardLoopManager

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = verl_rows(tokenizer, seed=104)
    assert len(data) >= 5
    token = f"+reward.custom_reward_function.reward_kwargs.token={reward_server.token}"
    config = verl_config([*verl_overrides(url=reward_server.base_url), token], tiny_model_dir)
    assert config.reward.custom_reward_function.name == "compute_score_async"
    kwargs = config.reward.custom_reward_function.reward_kwargs
    manager = RewardLoopManager(config)
    try:
        batch = verl_batch(tokenizer, data)
        out = manager.compute_rm_score(batch)
    finally:
        for worker in manager.reward_loop_workers:
            ray.kill(worker)
    scores = out.batch["rm_scores"]
    last = batch.batch["attention_mask"][:, batch.batch["prompts"].size(1):].sum(1) - 1
    rewards = [scores[i, last[i]].item() for i in range(len(data))]
    assert scores.sum().item() == pytest.approx(sum(rewards), abs=1e-5)  # nothing anywhere else
    expected = served(reward_server, [d[3] for d in data[:-1]], [d[1] for d in data[:-1]], kwargs.mode, kwargs.k)
    assert rewards[:-1] == pytest.approx(expected, abs=1e-4)
    assert rewards[-1] == 0.0 and out.non_tensor_batch["blank"].tolist() == [False] * (len(data) - 1) + [True]
    assert out.non_tensor_batch["k_used"].tolist()[:-1] == [kwargs.k] * (len(data) - 1)
    assert set(out.meta_info["reward_extra_keys"]) == {"score", "k_used", "unfinished", "rationale_tokens", "blank"}


@pytest.mark.slow
def test_verl_reward_loop_worker_runs_both_functions(reward_server, tiny_model_dir):
    """In-process RewardLoopWorker (the actor's class) with ``compute_score`` (run in its executor,
    one request per sample) and ``compute_score_async`` (gathered: the samples go out together)."""
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop import RewardLoopWorker

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = verl_rows(tokenizer, seed=106)
    expected = served(reward_server, [d[3] for d in data[:-1]], [d[1] for d in data[:-1]], "direct") + [0.0]
    batch = verl_batch(tokenizer, data)
    for name in ("compute_score", "compute_score_async"):
        overrides = verl_overrides(url=reward_server.base_url, mode="direct", name=name)
        overrides = [o for o in overrides if not o.startswith("+reward.custom_reward_function.reward_kwargs.k=")]
        config = verl_config([*overrides, f"+reward.custom_reward_function.reward_kwargs.token={reward_server.token}"],
                             tiny_model_dir)
        worker = RewardLoopWorker(config)
        assert worker.reward_manager.is_async_reward_score == (name == "compute_score_async")

        async def score(worker=worker):
            # The adapter module as veRL loaded it: get_custom_reward_fn's partial holds the raw function.
            counter = worker.reward_manager.compute_score.args[0].__globals__["gatherer_requests"]
            return await worker.compute_score_batch(batch), counter()

        results, gathered = worker.loop.run_until_complete(score())
        assert [r["reward_score"] for r in results] == pytest.approx(expected, abs=1e-4), name
        assert results[-1]["reward_extra_info"]["blank"]
        if name == "compute_score_async":
            assert gathered == 1  # every sample of the batch in one request


@pytest.mark.slow  # veRL imports Ray
def test_verl_legacy_top_level_key_is_not_read_by_main_ppo(tiny_model_dir):
    """veRL 0.9.1's main_ppo reads only reward.custom_reward_function: the old top-level key stays
    in the config but nothing loads it (only fully_async_main migrates it)."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    legacy = [o.replace("reward.custom_reward_function", "custom_reward_function") for o in verl_overrides()]
    config = verl_config([o for o in legacy if not o.startswith("+")], tiny_model_dir)
    assert config.custom_reward_function.name == "compute_score_async"
    assert get_custom_reward_fn(config) is None
    current = verl_config(verl_overrides(), tiny_model_dir)
    assert get_custom_reward_fn(current).args[0].__name__ == "compute_score_async"


def test_verl_functions_fail_clearly_without_the_question_or_with_unknown_options():
    kwargs = {"url": dead_url()}  # never reached
    with pytest.raises(ValueError, match=r"extra_info has no text 'question' \(found \['index', 'split'\]\)"):
        verl_adapter.compute_score(TASK, "The answer is ab.", "ab", {"split": "test", "index": 3}, **kwargs)
    with pytest.raises(ValueError, match=r"sample: .*extra_info has no text 'problem'"):
        verl_adapter.compute_score(TASK, "a", "a", {"question": "q"}, question_key="problem", **kwargs)
    with pytest.raises(TypeError, match=r"unknown reward.custom_reward_function.reward_kwargs \['modee'\]"):
        verl_adapter.compute_score(TASK, "x", "y", {"question": "q"}, modee="cot", **kwargs)
    blank = verl_adapter.compute_score(TASK, "  ", "y", {"question": "q"}, **kwargs)
    assert blank["score"] == 0.0 and blank["blank"]


def test_verl_functions_raise_when_the_service_is_down():
    kwargs = {"url": dead_url(), "retries": 1, "backoff_s": 0.01}
    info = {"question": "Take the last letters of the words in \"ab cd\" and concatenate them."}
    with pytest.raises(RewardServiceError, match="no reward after 2 attempts"):
        verl_adapter.compute_score(TASK, "The answer is bd.", "bd", info, **kwargs)

    async def reward_loop():
        calls = [verl_adapter.compute_score_async(TASK, f"The answer is {x}.", "bd", info, **kwargs) for x in ("bd", "bc")]
        return await asyncio.gather(*calls, return_exceptions=True)

    errors = asyncio.run(reward_loop())
    assert all(isinstance(e, RewardServiceError) for e in errors)  # every waiting sample, none a reward
