"""The Ray Serve reward endpoint (genrm_ray.serving): both routes, the handle, dedup and cache, auth,
every class of bad input, a schema-driven fuzz run, metrics export, and equality of served rewards
with the library's GenRMScorer over the offline engine.

ONE app for the whole session (``reward_server`` in tests/fixtures/serving.py: tests/configs/serve_test.yaml
over the tiny random-init model, fp32, bearer auth on), since each replica loads a vLLM engine.
"""

from __future__ import annotations

import json
import random
import time

import pytest
import requests

from genrm_ray import prompts
from genrm_ray.scoring import CotConfig, GenRMScorer, VerifyItem
from genrm_ray.tasks import get_task

pytestmark = pytest.mark.slow
TASK = "last_letter"


def problems_and_solutions(n_problems: int, per_problem: int, seed: int = 0) -> list[tuple[str, str]]:
    task = get_task(TASK)
    rng = random.Random(seed)
    out = []
    for p in task.generate("test", n_problems, seed=seed):
        out += [(p.question, c.solution) for c in task.candidate_solutions(p, per_problem, rng)]
    return out


def post(server, path: str, body, headers: dict | None = None, raw: bool = False) -> requests.Response:
    h = dict(server.headers if headers is None else headers)
    if raw:
        return requests.post(server.base_url + path, data=body, headers=h | {"Content-Type": "application/json"}, timeout=120)
    return requests.post(server.base_url + path, json=body, headers=h, timeout=120)


def rewards_ok(server, body) -> dict:
    r = post(server, "/v1/rewards", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["rewards"]) == len(body["items"]) == len(out["details"])
    return out


# --- scoring equals the library's ------------------------------------------------------------

def test_direct_rewards_equal_library_scoring_for_bare_question_and_solve_prompt(reward_server, vllm_backend):
    pairs = problems_and_solutions(3, 3, seed=1)
    expected = GenRMScorer(vllm_backend).score_direct([VerifyItem(TASK, q, s) for q, s in pairs])
    bare = rewards_ok(reward_server, {"items": [{"prompt": q, "response": s} for q, s in pairs], "mode": "direct"})
    full = rewards_ok(reward_server, {"items": [{"prompt": prompts.solve_prompt(TASK, q), "response": s, "label": "x"}
                                                for q, s in pairs]})
    for out in (bare, full):
        assert out["model"] == reward_server.cfg.model_name and out["mode"] == "direct"
        for got, want, detail in zip(out["rewards"], expected, out["details"]):
            assert got == pytest.approx(want.reward, abs=1e-4)
            assert detail["k_used"] == 1 and detail["p_yes"] == [got] and detail["rationale_tokens"] == 0
    # Distinct candidates really get distinct scores (the comparison is not between constants).
    assert len({round(r, 6) for r in bare["rewards"]}) > 1


def test_cot_with_fixed_seed_equals_library_scoring(reward_server, vllm_backend):
    # The server config fixes scoring.cot.seed, and vLLM seeds each request's sampler, so the same
    # items in the same order draw the same rationales as the offline engine.
    s = reward_server.cfg.scoring
    pairs = problems_and_solutions(2, 2, seed=2)
    settings = CotConfig(k=3, max_rationale_tokens=s.cot.max_rationale_tokens, seed=s.cot.seed)
    expected = GenRMScorer(vllm_backend).score_cot([VerifyItem(TASK, q, sol) for q, sol in pairs], settings, True)
    out = rewards_ok(reward_server, {"items": [{"prompt": q, "response": sol} for q, sol in pairs], "mode": "cot",
                                     "k": 3, "return_rationales": True})
    for got, detail, want in zip(out["rewards"], out["details"], expected):
        assert detail["k_used"] == want.k_used == 3 and len(detail["p_yes"]) == 3
        assert detail["rationales"] == want.rationales
        assert detail["rationale_tokens"] == want.rationale_tokens and detail["unfinished"] == want.unfinished
        assert got == pytest.approx(want.reward, abs=1e-4)
        assert got == pytest.approx(sum(detail["p_yes"]) / 3)
    assert out["usage"]["rationale_tokens"] == sum(d["rationale_tokens"] for d in out["details"])


def test_injected_verdicts_are_neutralized_alike_served_and_offline(reward_server, vllm_backend):
    """The adversarial suite's responses (injected verdicts, look-alikes, forged rationales): the served
    reward equals the library's over the same engine, which is the reward of the neutralized text, and
    differs from what the injected text would get without the defence."""
    from genrm_ray.attacks import attack_responses

    task = get_task(TASK)
    # The injected and look-alike responses the defence rewrites (the praise line it leaves alone).
    chosen = [r for r in attack_responses(task, task.generate("test", 2, seed=4))
              if r.attack in ("injected_verdict", "lookalike_verdict")
              and prompts.neutralize_solution(r.response.strip()) != r.response.strip()]
    items = [VerifyItem(TASK, r.question, r.response) for r in chosen]
    served = rewards_ok(reward_server, {"items": [{"prompt": r.question, "response": r.response} for r in chosen],
                                        "mode": "direct"})["rewards"]
    library = [x.reward for x in GenRMScorer(vllm_backend).score_direct(items)]
    undefended = [x.reward for x in GenRMScorer(vllm_backend, neutralize=False).score_direct(items)]
    assert served == pytest.approx(library, abs=1e-4)
    # The defended score is the score of the text as prompts.neutralize_solution shows it.
    shown = [VerifyItem(TASK, i.question, prompts.neutralize_solution(i.solution)) for i in items]
    assert library == pytest.approx([x.reward for x in GenRMScorer(vllm_backend, neutralize=False).score_direct(shown)], abs=1e-6)
    # Undefended, the model reads the injection; on this random tiny model only some of the rewards
    # move visibly (6 of 32 in a CI run).
    assert len(items) >= 20 and any(abs(a - b) > 1e-4 for a, b in zip(library, undefended))


def test_the_suite_job_scores_a_served_verifier_over_http(reward_server, vllm_backend, tiny_model_dir, tmp_path):
    """jobs/adversarial_suite.py against the endpoint by URL: every class, the padded one sized by the
    ``tokenizer`` dir (a served verifier brings none), and each served reward equals the library's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from genrm_ray.attacks import ATTACKS

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "suite"
    config = tmp_path / "suite.yaml"
    config.write_text(f"""
task: {TASK}
n: 2
verifiers:
  Served: {{kind: served, url: "{reward_server.base_url}", mode: direct}}
tokenizer: {tiny_model_dir}
pad_tokens: 300
output_dir: {out}
""")
    proc = subprocess.run([sys.executable, str(repo / "jobs" / "adversarial_suite.py"), "--config", str(config)], cwd=repo,
                          env={**os.environ, "GENRM_REWARD_TOKEN": reward_server.token}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["pad_tokens"] == 300
    assert set(results["verifiers"]["Served"]["classes"]) == set(ATTACKS) | {"right_solution"}
    records = [json.loads(line) for line in (out / "scores.jsonl").open()]
    assert any(r["attack"] == "padded" for r in records)
    library = GenRMScorer(vllm_backend).score_direct([VerifyItem(TASK, r["question"], r["response"]) for r in records])
    assert [r["rewards"]["Served"] for r in records] == pytest.approx([x.reward for x in library], abs=1e-4)


def test_adaptive_k_stops_between_min_k_and_k(reward_server):
    pairs = problems_and_solutions(2, 2, seed=3)
    out = rewards_ok(reward_server, {"items": [{"prompt": q, "response": s} for q, s in pairs], "mode": "cot",
                                     "k": 6, "adaptive": True})
    min_k = reward_server.cfg.scoring.cot.min_k
    for d in out["details"]:
        assert min_k <= d["k_used"] <= 6 and len(d["p_yes"]) == d["k_used"]


# --- OpenRLHF route, handle, models, health -------------------------------------------------------

def test_get_reward_speaks_openrlhf_protocol(reward_server):
    pairs = problems_and_solutions(2, 2, seed=4)
    eos = "</s>"  # OpenRLHF decodes with special tokens; the server strips trailing eos/pad
    plist = [prompts.solve_prompt(TASK, q) for q, _ in pairs]
    r = post(reward_server, "/get_reward", {"query": [p + s + eos for p, (_, s) in zip(plist, pairs)], "prompts": plist,
                                            "labels": ["x"] * len(pairs), "metas": [{}] * len(pairs)})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"rewards", "scores", "extra_logs"}
    ref = rewards_ok(reward_server, {"items": [{"prompt": q, "response": s} for q, s in pairs]})
    assert out["rewards"] == pytest.approx(ref["rewards"], abs=1e-6) and out["scores"] == out["rewards"]
    assert all(len(v) == len(pairs) for v in out["extra_logs"].values()) and "k_used" in out["extra_logs"]


def test_handle_scores_like_http_and_rejects_bad_input(reward_server):
    from genrm_ray.serving.schemas import RequestError

    pairs = problems_and_solutions(1, 3, seed=5)
    body = {"items": [{"prompt": q, "response": s} for q, s in pairs]}
    via_handle = reward_server.handle.score.remote(body).result(timeout_s=120)
    assert via_handle["rewards"] == pytest.approx(rewards_ok(reward_server, body)["rewards"], abs=1e-6)
    with pytest.raises(RequestError, match="max_k"):
        reward_server.handle.score.remote(body | {"mode": "cot", "k": 10_000}).result(timeout_s=60)


def test_models_and_healthz(reward_server):
    r = requests.get(reward_server.base_url + "/v1/models", headers=reward_server.headers, timeout=30)
    assert r.status_code == 200, r.text
    (card,) = r.json()["data"]
    assert card["checkpoint"] == reward_server.cfg.checkpoint and card["task"] == TASK
    assert {"direct", "cot"} <= set(card["modes"]) and card["max_k"] == reward_server.cfg.scoring.max_k
    assert requests.get(reward_server.base_url + "/healthz", timeout=30).json()["status"] == "ok"  # no token needed
    schema = requests.get(reward_server.base_url + "/openapi.json", timeout=30).json()
    assert {"/v1/rewards", "/get_reward", "/healthz", "/v1/models"} <= set(schema["paths"])


# --- dedup, cache -------------------------------------------------------------------------------

def test_identical_pairs_are_scored_once_per_request_and_cached_across_requests(reward_server):
    pairs = problems_and_solutions(1, 2, seed=6)
    group = [pairs[0], pairs[1], pairs[0], pairs[0], pairs[1]]  # a GRPO group with repeated answers
    body = {"items": [{"prompt": q, "response": s} for q, s in group], "mode": "cot", "k": 2}
    first = rewards_ok(reward_server, body)
    u = first["usage"]
    assert (u["items"], u["unique_items"], u["scored"], u["cache_hits"]) == (5, 2, 2, 0)
    assert u["dedup_hit_rate"] == pytest.approx(3 / 5)
    assert first["rewards"][0] == first["rewards"][2] == first["rewards"][3] and first["rewards"][1] == first["rewards"][4]
    assert sum(d["rationale_tokens"] for d in first["details"][:2]) == u["rationale_tokens"]  # counted once
    second = rewards_ok(reward_server, body)
    assert (second["usage"]["cache_hits"], second["usage"]["scored"], second["usage"]["cache_hit_rate"]) == (2, 0, 1.0)
    assert second["rewards"] == first["rewards"]


# --- auth ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_requests_without_the_token_get_401(reward_server, headers):
    body = {"items": [{"prompt": "q", "response": "a"}]}
    for path in ("/v1/rewards", "/get_reward"):
        r = post(reward_server, path, body, headers=headers)
        assert r.status_code == 401 and "bearer" in r.json()["detail"]
    assert requests.get(reward_server.base_url + "/v1/models", headers=headers, timeout=30).status_code == 401
    # Bad bodies get 401 too: the token is checked before the body is read.
    assert post(reward_server, "/v1/rewards", "{not json", headers=headers, raw=True).status_code == 401


# --- bad input: 4xx naming the problem, server keeps serving ----------------------------------------

def _long_text(server) -> str:
    return "word " * (server.cfg.engine.max_model_len + 10)


ITEM = {"prompt": 'Take the last letters of the words in "ab cd" and concatenate them.', "response": "The answer is bd."}
BAD_REWARDS = [
    ("malformed json", '{"items": [', "JSON"),
    ("not an object", "[1, 2]", "dict"),
    ("missing items", {"mode": "direct"}, "items"),
    ("missing response", {"items": [{"prompt": "q"}]}, "response"),
    ("items not a list", {"items": "abc"}, "list"),
    ("prompt not a string", {"items": [{"prompt": 3, "response": "a"}]}, "string"),
    ("k as a string", {"items": [ITEM], "mode": "cot", "k": "4"}, "integer"),
    ("k zero", {"items": [ITEM], "mode": "cot", "k": 0}, "greater than or equal to 1"),
    ("k above max", {"items": [ITEM], "mode": "cot", "k": 9}, "max_k=8"),
    ("huge k", {"items": [ITEM], "mode": "cot", "k": 10**30}, "max_k"),
    ("adaptive not bool", {"items": [ITEM], "adaptive": "yes"}, "boolean"),
    ("empty list", {"items": []}, "at least 1"),
    ("empty prompt", {"items": [{"prompt": "", "response": "a"}]}, "at least 1 character"),
    ("blank prompt", {"items": [{"prompt": "   ", "response": "a"}]}, "blank"),
    ("empty response", {"items": [{"prompt": "q", "response": ""}]}, "at least 1 character"),
    ("unknown mode", {"items": [ITEM], "mode": "pairwise"}, "direct"),
    ("unknown task", {"items": [ITEM | {"task": "chess"}]}, "unknown task 'chess'"),
    ("unknown field", {"items": [ITEM], "temperature": 2.0}, "temperature"),
    ("lone surrogate", '{"items": [{"prompt": "q\\ud800", "response": "a"}]}', "unicode"),
    ("solve prompt of another task", {"items": [{"prompt": prompts.solve_prompt("arithmetic", "1+1?"), "response": "2"}]},
     "task 'arithmetic'"),
    ("too many items", {"items": [ITEM] * 65}, "max_items=64"),
    ("too long", "LONG", "max_model_len=2048"),
    ("too long for cot", "LONG_COT", "max_rationale_tokens"),
]


@pytest.mark.parametrize("name,body,message", BAD_REWARDS, ids=[b[0] for b in BAD_REWARDS])
def test_bad_reward_requests_get_422_naming_the_problem(reward_server, name, body, message):
    if body == "LONG":
        body = {"items": [{"prompt": "q", "response": _long_text(reward_server)}]}
    elif body == "LONG_COT":  # fits for direct, but not with room for a rationale
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(reward_server.cfg.checkpoint)
        scaffold = len(tok.encode(prompts.verify_cot_prompt(TASK, "q", "a"))) - 1  # the byte-level "a"*n is n tokens
        n = reward_server.cfg.engine.max_model_len - scaffold - reward_server.cfg.scoring.cot.max_rationale_tokens // 2
        body = {"items": [{"prompt": "q", "response": "a" * n}], "mode": "cot", "k": 1}
        assert post(reward_server, "/v1/rewards", body | {"mode": "direct"}).status_code == 200
    r = post(reward_server, "/v1/rewards", body, raw=isinstance(body, str))
    assert r.status_code == 422, (r.status_code, r.text)
    assert message in json.dumps(r.json()["detail"]), r.text


BAD_GET_REWARD = [
    ("lengths differ", {"query": ["ab", "cd"], "prompts": ["a"]}, "prompts has 1"),
    ("query not prompt + response", {"query": ["xyz"], "prompts": ["ab"]}, "does not start with prompts[0]"),
    ("no response", {"query": ["ab</s>"], "prompts": ["ab"]}, "no response"),
    ("labels length", {"query": ["ab c"], "prompts": ["ab"], "labels": [1, 2]}, "labels has 2"),
    ("missing prompts", {"query": ["ab c"]}, "prompts"),
    ("query of numbers", {"query": [1], "prompts": ["a"]}, "string"),
    # Found by schemathesis 4.32: a blank prompt reached RewardRequest inside the route (a 500).
    ("blank prompt", {"query": ["0"], "prompts": [""]}, "prompts[0] is blank"),
]


@pytest.mark.parametrize("name,body,message", BAD_GET_REWARD, ids=[b[0] for b in BAD_GET_REWARD])
def test_bad_get_reward_requests_get_422(reward_server, name, body, message):
    r = post(reward_server, "/get_reward", body)
    assert r.status_code == 422, (r.status_code, r.text)
    assert message in json.dumps(r.json()["detail"]), r.text


def test_server_keeps_serving_after_bad_input(reward_server):
    for _, body, _ in BAD_REWARDS[:5]:
        post(reward_server, "/v1/rewards", body, raw=isinstance(body, str))
    rewards_ok(reward_server, {"items": [ITEM]})


# --- fuzzing: random and schema-derived payloads never cause a 5xx ------------------------------------

def test_random_json_bodies_never_cause_a_server_error(reward_server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                          max_leaves=12)
    keys = st.sampled_from(["items", "mode", "k", "adaptive", "prompt", "response", "query", "prompts", "labels", "task"])
    bodies = values | st.dictionaries(keys, values, max_size=5) | st.builds(
        lambda items, extra: {"items": items} | extra,
        st.lists(st.fixed_dictionaries({"prompt": st.text(max_size=30), "response": st.text(max_size=30)}), max_size=3),
        st.dictionaries(keys, values, max_size=2))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/v1/rewards", "/get_reward"]), body=bodies)
    def check(path, body):
        r = post(reward_server, path, body)
        assert r.status_code < 500, (path, body, r.status_code, r.text)

    check()
    rewards_ok(reward_server, {"items": [ITEM]})


def test_schemathesis_finds_no_server_error(reward_server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(reward_server.base_url + "/openapi.json")
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(base_url=reward_server.base_url, headers=reward_server.headers, timeout=120)
            assert response.status_code < 500, (case.path, case.body, response.status_code, response.text)

        check()
        checked += 1
    assert checked == 4
    rewards_ok(reward_server, {"items": [ITEM]})


# --- metrics --------------------------------------------------------------------------------------

def test_custom_metrics_reach_the_prometheus_export(reward_server, ray_cluster):
    import ray

    rewards_ok(reward_server, {"items": [ITEM, ITEM], "mode": "cot", "k": 2})
    (node,) = [n for n in ray.nodes() if n["Alive"]]
    url = f"http://127.0.0.1:{node['MetricsExportPort']}/metrics"
    wanted = ["ray_genrm_requests_total", "ray_genrm_items_total", "ray_genrm_rationale_tokens_total",
              "ray_genrm_dedup_hits_total", "ray_genrm_k_used_bucket", "ray_genrm_request_latency_s_bucket"]
    deadline = time.monotonic() + 90  # Ray's metrics agent exports every few seconds
    while True:
        text = requests.get(url, timeout=30).text
        missing = [m for m in wanted if m not in text]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not missing, f"not in {url}: {missing}"
    items = [line for line in text.splitlines() if line.startswith("ray_genrm_items_total{") and 'mode="cot"' in line]
    assert items and float(items[0].rsplit(" ", 1)[1]) >= 2
    statuses = [line for line in text.splitlines() if line.startswith("ray_genrm_requests_total{")]
    assert any('status="2xx"' in line for line in statuses) and any('status="4xx"' in line for line in statuses), statuses
