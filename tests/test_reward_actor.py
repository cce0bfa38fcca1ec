"""The reward client and actor (genrm_ray.reward_client, actors/reward_actor.py over the sources of
genrm_ray.rl.rewards). The registry's own checks (no Ray) are in tests/test_rl_rewards.py, token-level
reward placement in tests/test_rl_token_rewards.py.

Served rewards come from the session's ONE reward app (``reward_server``, tests/fixtures/serving.py).
Failure cases use real sockets: a closed port, and ``Proxy`` - a real HTTP server started in the
test that forwards to the reward app and can answer 503, hold requests, or damage a reply.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import pytest
import requests

from genrm_ray import prompts
from genrm_ray.reward_client import RewardClient, RewardRequestError, RewardServiceError
from genrm_ray.tasks import get_task
from tests.fixtures.ray_cluster import free_port

TASK = "last_letter"


class Row(NamedTuple):
    prompt: str  # the policy prompt (solve prompt)
    response: str
    answer: str  # reference answer (the label)
    correct: bool
    question: str


def policy_pairs(n_problems: int, per_problem: int, seed: int = 0) -> list[Row]:
    """Policy prompts with varied candidate responses (reference, perturbed) of test problems."""
    task = get_task(TASK)
    rng = random.Random(seed)
    out = []
    for p in task.generate("test", n_problems, seed=seed):
        for c in task.candidate_solutions(p, per_problem, rng):
            out.append(Row(prompts.solve_prompt(TASK, p.question), c.solution, p.answer, c.correct, p.question))
    return out


def direct_post(server, prompts_, responses, mode: str, k: int | None = None) -> dict:
    body = {"items": [{"prompt": p, "response": r} for p, r in zip(prompts_, responses)], "mode": mode}
    if k is not None:
        body["k"] = k
    r = requests.post(server.base_url + "/v1/rewards", json=body, headers=server.headers, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


class Proxy:
    """A real HTTP server on 127.0.0.1:``port`` forwarding POSTs to ``upstream`` (base URL + path).

    fail_first: answer this many requests with 503 first (an app that is restarting).
    hold_until: hold each request until this many are in flight (or 20 s pass), so concurrency is
        observed, not inferred from timing. edit: rewrite a forwarded JSON reply.
    """

    def __init__(self, upstream: str, port: int | None = None, fail_first: int = 0, hold_until: int = 0,
                 edit: Callable[[dict], dict] | None = None):
        self.upstream, self.fail_first, self.hold_until, self.edit = upstream, fail_first, hold_until, edit
        self.requests = 0  # every POST received
        self.batch_sizes: list[int] = []  # items per forwarded request
        self.in_flight = self.max_in_flight = 0
        self.cond = threading.Condition()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.cond:
                    proxy.requests += 1
                    failing = proxy.requests <= proxy.fail_first
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                    proxy.cond.notify_all()
                    if not failing and proxy.hold_until:
                        proxy.cond.wait_for(lambda: proxy.max_in_flight >= proxy.hold_until, timeout=20)
                try:
                    if failing:
                        status, out = 503, b'{"detail": "restarting"}'
                    else:
                        proxy.batch_sizes.append(len(json.loads(body)["items"]))
                        req = urllib.request.Request(proxy.upstream + self.path, data=body, method="POST",
                                                     headers={k: v for k, v in self.headers.items()
                                                              if k.lower() in ("authorization", "content-type")})
                        try:
                            with urllib.request.urlopen(req, timeout=120) as r:
                                status, out = r.status, r.read()
                        except urllib.error.HTTPError as e:
                            status, out = e.code, e.read()
                        if status == 200 and proxy.edit is not None:
                            out = json.dumps(proxy.edit(json.loads(out))).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                finally:
                    with proxy.cond:
                        proxy.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def reward_actors():
    """Creates RewardActors and kills them at the end of the test."""
    import ray

    from actors.reward_actor import RewardActor

    made = []

    def make(source: str, options: dict):
        actor = RewardActor.remote(source, options)
        made.append(actor)
        return actor

    yield make
    for actor in made:
        ray.kill(actor)


# --- the actor over the handle and over HTTP --------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("mode,k", [("direct", None), ("cot", 2)])
def test_actor_over_handle_and_http_equals_direct_post(reward_server, reward_actors, mode, k):
    import ray

    rows = policy_pairs(3, 2, seed=11)
    ps, rs, labels = [r.prompt for r in rows], [r.response for r in rows], [r.answer for r in rows]
    # The direct POST first: the actor's answers must match what the endpoint says for these inputs.
    want = direct_post(reward_server, ps, rs, mode, k)
    common = {"batch_size": 4} | ({"k": k} if mode == "cot" else {})
    via_handle = reward_actors(f"genrm_{mode}", common | {"app_name": reward_server.app_name})
    via_http = reward_actors(f"genrm_{mode}", common | {"url": reward_server.base_url, "token": reward_server.token})
    got_handle, got_http = ray.get([via_handle.score.remote(ps, rs, labels), via_http.score.remote(ps, rs)], timeout=300)
    for got in (got_handle, got_http):
        assert got.rewards == pytest.approx(want["rewards"], abs=1e-6)
        assert [d["k_used"] for d in got.details] == [d["k_used"] for d in want["details"]] == [k or 1] * len(rows)
        assert [d["p_yes"] for d in got.details] == [d["p_yes"] for d in want["details"]]
    assert len({round(r, 6) for r in want["rewards"]}) > 1  # distinct items, so order is checked too


@pytest.mark.integration
def test_client_over_a_handle_object_in_the_driver(reward_server):
    rows = policy_pairs(2, 2, seed=12)
    ps, rs = [r.prompt for r in rows], [r.response for r in rows]
    got = RewardClient(handle=reward_server.handle, mode="direct", batch_size=3).score(ps, rs)
    assert got.rewards == pytest.approx(direct_post(reward_server, ps, rs, "direct")["rewards"], abs=1e-6)


# --- batching and overlap --------------------------------------------------------------------

@pytest.mark.integration
def test_items_over_batch_size_go_as_concurrent_requests_and_come_back_in_order(reward_server):
    rows = policy_pairs(4, 2, seed=13)  # 8 items
    ps, rs = [r.prompt for r in rows], [r.response for r in rows]
    want = direct_post(reward_server, ps, rs, "direct")["rewards"]
    with Proxy(reward_server.base_url, hold_until=3) as proxy:
        client = RewardClient(url=proxy.url, token=reward_server.token, mode="direct", batch_size=3, retries=0)
        got = client.score(ps, rs)
    assert sorted(proxy.batch_sizes) == [2, 3, 3] and proxy.requests == client.attempts == 3
    assert proxy.max_in_flight == 3  # all three requests were out at once
    assert got.rewards == pytest.approx(want, abs=1e-6) and len(got.details) == 8


@pytest.mark.integration
def test_two_actor_score_calls_overlap(reward_server, reward_actors):
    import ray

    rows = policy_pairs(2, 2, seed=14)
    ps, rs = [r.prompt for r in rows], [r.response for r in rows]
    # Each call is one request; the proxy holds the first until the second arrives. A serial actor
    # would leave max_in_flight at 1 (the hold times out after 20 s instead).
    with Proxy(reward_server.base_url, hold_until=2) as proxy:
        actor = reward_actors("genrm_direct", {"url": proxy.url, "token": reward_server.token})
        first, second = ray.get([actor.score.remote(ps[:2], rs[:2]), actor.score.remote(ps[2:], rs[2:])], timeout=120)
    assert proxy.max_in_flight == 2 and proxy.requests == 2
    want = direct_post(reward_server, ps, rs, "direct")["rewards"]
    assert first.rewards + second.rewards == pytest.approx(want, abs=1e-6)


# --- failures ----------------------------------------------------------------------------------

@pytest.mark.integration
def test_endpoint_down_raises_after_the_configured_retries(ray_cluster, reward_actors):
    import ray

    url = f"http://127.0.0.1:{free_port()}/genrm"  # nothing listens there
    client = RewardClient(url=url, mode="direct", retries=2, backoff_s=0.1)
    start = time.monotonic()
    with pytest.raises(RewardServiceError) as err:
        client.score(["What?"], ["Nothing."])
    assert client.attempts == 3
    assert time.monotonic() - start >= 0.1 + 0.2  # backoff 0.1 s, then 0.2 s
    msg = str(err.value)
    assert url + "/v1/rewards" in msg and "3 attempts" in msg and "Connect" in msg
    # Through the actor the loop gets the same error, never a reward.
    actor = reward_actors("genrm_cot", {"url": url, "retries": 1, "backoff_s": 0.05})
    with pytest.raises(RewardServiceError, match="2 attempts"):
        ray.get(actor.score.remote(["What?"], ["Nothing."]), timeout=60)


@pytest.mark.integration
def test_endpoint_restarted_recovers_with_the_real_rewards(reward_server):
    rows = policy_pairs(2, 2, seed=15)
    ps, rs = [r.prompt for r in rows], [r.response for r in rows]
    want = direct_post(reward_server, ps, rs, "cot", 2)["rewards"]
    port = free_port()
    client = RewardClient(url=f"http://127.0.0.1:{port}", token=reward_server.token, mode="cot", k=2,
                          retries=3, backoff_s=1.0)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client.score, ps, rs)
        # Attempt 1 finds the port closed; the endpoint comes up during the 1 s backoff and answers
        # 503 once (still restarting); attempt 3 (2 s later) is forwarded to the real app.
        deadline = time.monotonic() + 30
        while client.attempts < 1:
            assert time.monotonic() < deadline, "the client never tried"
            time.sleep(0.01)
        time.sleep(0.2)
        with Proxy(reward_server.base_url, port=port, fail_first=1) as proxy:
            got = future.result(timeout=120)
    assert client.attempts == 3 and proxy.requests == 2  # refused, 503, forwarded
    assert got.rewards == pytest.approx(want, abs=1e-6)


@pytest.mark.integration
def test_4xx_raises_at_once_with_the_servers_message(reward_server, reward_actors):
    import ray

    ok = policy_pairs(1, 1, seed=16)[0]
    http = RewardClient(url=reward_server.base_url, token=reward_server.token, mode="direct", retries=3, backoff_s=5)
    start = time.monotonic()
    with pytest.raises(RewardRequestError, match=r"HTTP 422.*at least 1 character"):
        http.score([ok.prompt], [""])  # empty response: the schema's min_length
    assert http.attempts == 1 and time.monotonic() - start < 5  # no retry, no backoff
    other_task = prompts.solve_prompt("word_sort", "Sort these words: 'b', 'a'.")
    with pytest.raises(RewardRequestError, match="solve prompt of task 'word_sort'"):
        http.score([other_task], [ok.response])
    assert http.attempts == 2
    wrong_token = RewardClient(url=reward_server.base_url, token="not-the-token", mode="direct", retries=3)
    with pytest.raises(RewardRequestError, match="HTTP 401.*bearer token"):
        wrong_token.score([ok.prompt], [ok.response])
    assert wrong_token.attempts == 1
    # The handle path: the replica's validation error, not retried.
    handle = RewardClient(app_name=reward_server.app_name, mode="cot", k=10_000, retries=3, backoff_s=5)
    with pytest.raises(RewardRequestError, match="max_k"):
        handle.score([ok.prompt], [ok.response])
    assert handle.attempts == 1
    actor = reward_actors("genrm_direct", {"app_name": reward_server.app_name, "backoff_s": 5})
    with pytest.raises(RewardRequestError, match="response"):
        ray.get(actor.score.remote([ok.prompt], [""]), timeout=60)


@pytest.mark.integration
def test_reply_without_one_reward_per_item_is_an_error(reward_server):
    rows = policy_pairs(1, 2, seed=17)
    drop_one = lambda out: out | {"rewards": out["rewards"][:-1]}  # noqa: E731
    with Proxy(reward_server.base_url, edit=drop_one) as proxy:
        client = RewardClient(url=proxy.url, token=reward_server.token, mode="direct")
        with pytest.raises(RewardServiceError, match="1 rewards, 2 details for 2 items"):
            client.score([r.prompt for r in rows], [r.response for r in rows])


def test_client_rejects_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of url / app_name / handle"):
        RewardClient()
    with pytest.raises(ValueError, match="exactly one"):
        RewardClient(url="http://x", handle=object())
    with pytest.raises(ValueError, match="mode"):
        RewardClient(url="http://x", mode="vote")
    client = RewardClient(url="http://x")
    with pytest.raises(ValueError, match="prompts has 2 entries but responses has 1"):
        client.score(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="labels has 1 entries"):
        client.score(["a", "b"], ["c", "d"], ["e"])
    assert client.attempts == 0


# --- other reward sources (genrm_ray.rl.rewards) ---------------------------------------------------

@pytest.mark.integration
def test_oracle_source_grades_against_the_labels(ray_cluster, reward_actors):
    import ray

    rows = policy_pairs(3, 4, seed=18)
    ps, rs, labels, correct, _ = zip(*rows)
    assert any(correct) and not all(correct)
    actor = reward_actors("oracle", {"task": TASK})
    got = ray.get(actor.score.remote(list(ps), list(rs), list(labels)), timeout=60)
    assert got.rewards == [1.0 if c else 0.0 for c in correct]
    with pytest.raises(ValueError, match="needs labels"):
        ray.get(actor.score.remote(list(ps), list(rs)), timeout=60)
    with pytest.raises(ValueError, match=r"labels\[0\] = '42' is not a valid 'last_letter' answer"):
        ray.get(actor.score.remote([ps[0]], [rs[0]], ["42"]), timeout=60)


@pytest.mark.integration
def test_discriminative_source_equals_discriminative_scorer(ray_cluster, reward_actors, tiny_model_dir, tmp_path):
    import ray

    from genrm_ray.models import create_tiny_model
    from genrm_ray.rl.rewards import make_source
    from genrm_ray.scoring import DiscriminativeScorer, VerifyItem

    # Untrained: the test compares the actor with the library's scorer, not reward quality.
    model_dir = str(create_tiny_model(tmp_path / "classifier", size="tiny", seed=3, head="classifier"))
    rows = policy_pairs(2, 3, seed=19)
    want = DiscriminativeScorer(model_dir).score_direct([VerifyItem(TASK, r.question, r.response) for r in rows])
    actor = reward_actors("discriminative", {"model_dir": model_dir, "task": TASK, "batch_size": 4})
    responses = [r.response for r in rows]
    from_solve_prompts = ray.get(actor.score.remote([r.prompt for r in rows], responses), timeout=120)
    from_questions = ray.get(actor.score.remote([r.question for r in rows], responses), timeout=120)
    for got in (from_solve_prompts, from_questions):
        assert got.rewards == pytest.approx([w.reward for w in want], abs=1e-6)
    assert len({round(w.reward, 6) for w in want}) > 1
    with pytest.raises(ValueError, match="not a sequence classifier"):
        make_source("discriminative", {"model_dir": str(tiny_model_dir), "task": TASK})


@pytest.mark.integration
def test_actor_with_an_unknown_source_or_option_fails_listing_the_known_ones(ray_cluster, reward_actors):
    """The registry's errors (tests/test_rl_rewards.py) reach the caller of the actor's first call."""
    import ray
    from ray.exceptions import RayActorError

    for source, options, message in [("genrm", {}, r"unknown reward source 'genrm'; known: \['discriminative'"),
                                     ("genrm_cot", {"url": "http://x", "model_dir": "/m"},
                                      r"'genrm_cot': unknown option\(s\) \['model_dir'\]; known: \['url'")]:
        actor = reward_actors(source, options)
        with pytest.raises(RayActorError, match=message):
            ray.get(actor.score.remote(["What?"], ["Nothing."]), timeout=60)
