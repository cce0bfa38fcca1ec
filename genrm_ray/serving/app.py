"""The Ray Serve reward application: FastAPI ingress, one vLLM engine per replica, GenRMScorer on top.

    app = make_app(load_serve_config("configs/serve/cpu.yaml", ["checkpoint=DIR"]))
    serve.run(app, name=cfg.http.app_name, route_prefix=cfg.http.route_prefix)

or, from a Serve config file / the CLI, ``build_app({"config": ..., "checkpoint": ..., "key": value})``
(``import_path: genrm_ray.serving.app:build_app``). Routes: POST /v1/rewards, POST /get_reward
(OpenRLHF), GET /healthz, GET /v1/models; the OpenAPI schema is at /openapi.json. In-cluster
callers use the deployment handle: ``await handle.score.remote({"items": [...], "mode": "cot"})``.

Continuous batching happens in the engine: every request a replica accepts is awaited
concurrently, and vLLM schedules all their sequences together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from genrm_ray import prompts
from genrm_ray.env import release_free_memory
from genrm_ray.responses import is_blank, response_of_query
from genrm_ray.serving import auth
from genrm_ray.serving.config import (
    ServeConfig,
    auth_token,
    check_serve_config,
    deployment_options,
    engine_options,
    load_serve_config,
    model_dir,
)
from genrm_ray.serving.dedup import LRUCache, unique
from genrm_ray.serving.metrics import replica_metrics
from genrm_ray.serving.schemas import (
    ItemDetail,
    ModelCard,
    OpenRLHFRequest,
    OpenRLHFResponse,
    RequestError,
    RewardRequest,
    RewardResponse,
    Usage,
    recover_question,
)

# Room left for re-tokenization drift: a CoT rationale is scored as text, and its re-encoded token
# count can differ slightly from the count the engine generated.
COT_MARGIN_TOKENS = 8


api = FastAPI(
    title="GenRM reward server",
    description="Generative verifier rewards (p(Yes), GenRM-CoT majority voting) for RL loops. See docs/serving.md.",
    version="1",
)


@api.exception_handler(RequestError)
async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": str(exc)})


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default, minus the echoed input (which can be megabytes and may hold bytes JSON
    # cannot encode, which would turn the 422 into a 500).
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


@api.middleware("http")
async def _auth_and_count(request: Request, call_next):
    start = time.perf_counter()
    if auth.allowed(request.url.path, request.headers.get("authorization")):
        response = await call_next(request)
    else:
        response = JSONResponse(status_code=401, content={"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"},
                                headers={"WWW-Authenticate": "Bearer"})
    m, route = replica_metrics(), request.url.path
    m.requests.inc(tags={"route": route, "status": f"{response.status_code // 100}xx"})
    m.latency.observe(time.perf_counter() - start, tags={"route": route})
    return response


class ReloadGate:
    """Requests of a replica run together; a weight reload waits until they have finished and holds
    new ones back until the engine has the new weights, so no reward mixes old and new weights."""

    def __init__(self):
        self._cond = asyncio.Condition()
        self._active = 0
        self._reloading = False

    @contextlib.asynccontextmanager
    async def request(self):
        async with self._cond:
            await self._cond.wait_for(lambda: not self._reloading)
            self._active += 1
        try:
            yield
        finally:
            async with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def reload(self):
        async with self._cond:
            await self._cond.wait_for(lambda: not self._reloading)
            self._reloading = True
            await self._cond.wait_for(lambda: self._active == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._reloading = False
                self._cond.notify_all()


# Serve pickles the class when it is decorated (here, at import), so everything its methods use is
# defined above this line.
@serve.deployment
@serve.ingress(api)
class GenRMRewardServer:
    """One replica: an AsyncVLLMBackend over the checkpoint, a GenRMScorer, an LRU cache, metrics."""

    def __init__(self, cfg: ServeConfig, token: str | None = None):
        from genrm_ray.engine import AsyncVLLMBackend
        from genrm_ray.scoring import GenRMScorer
        from genrm_ray.tasks import TASKS

        self.cfg = cfg
        auth.set_token(token)
        self.tasks = sorted(TASKS)
        self.backend = AsyncVLLMBackend(str(model_dir(cfg)), **engine_options(cfg))
        self.tokenizer = self.backend.tokenizer
        self.scorer = GenRMScorer(self.backend, normalize=cfg.scoring.normalize,
                                  neutralize=cfg.scoring.neutralize)
        self.cache = LRUCache(cfg.scoring.cache_size)
        self.question_tokens = len(self.tokenizer.encode(prompts.DIRECT_QUESTION, add_special_tokens=False))
        self.metrics = replica_metrics()
        self.weights_version = 0  # 0: the checkpoint; then the version of reload.actor's weights
        self.weights_source = None  # reload.actor's handle, once looked up
        self.gate = ReloadGate()

    # --- HTTP routes -------------------------------------------------------------------------
    @api.post("/v1/rewards", response_model=RewardResponse)
    async def rewards(self, body: RewardRequest) -> dict:
        return await self._score(body)

    @api.post("/get_reward", response_model=OpenRLHFResponse)
    async def get_reward(self, body: OpenRLHFRequest) -> dict:
        """OpenRLHF's remote reward model protocol (``--remote_rm_url http://host:port/get_reward``)."""
        if len(body.query) != len(body.prompts):
            raise RequestError(f"query has {len(body.query)} entries but prompts has {len(body.prompts)}")
        if body.labels is not None and len(body.labels) != len(body.query):
            raise RequestError(f"labels has {len(body.labels)} entries but query has {len(body.query)}")
        items = [{"prompt": p, "response": self._response_of(i, q, p)} for i, (q, p) in enumerate(zip(body.query, body.prompts))]
        s = self.cfg.scoring
        out = await self._score(RewardRequest(items=items, mode=s.get_reward_mode, k=s.cot.k))
        d = out["details"]
        return {"rewards": out["rewards"], "scores": out["rewards"],
                "extra_logs": {"k_used": [float(x["k_used"]) for x in d],
                               "rationale_tokens": [float(x["rationale_tokens"]) for x in d],
                               "unfinished": [float(x["unfinished"]) for x in d]}}

    @api.get("/healthz")
    async def healthz(self) -> dict:
        await self.check_health()
        return {"status": "ok", "model": self.cfg.model_name}

    @api.get("/v1/models", response_model=dict[str, list[ModelCard]])
    async def models(self) -> dict:
        s = self.cfg.scoring
        card = ModelCard(id=self.cfg.model_name, checkpoint=self.cfg.checkpoint, task=s.task, tasks=self.tasks,
                         modes=["direct", "cot", "cot-adaptive"], max_k=s.max_k, max_items=s.max_items,
                         max_model_len=self.cfg.engine.max_model_len, normalize=s.normalize)
        return {"data": [card.model_dump()]}

    # --- handle API --------------------------------------------------------------------------
    async def score(self, request: dict | RewardRequest) -> dict:
        """The /v1/rewards scoring for in-cluster callers (``handle.score.remote({...})``); same body
        and result; bad input raises RequestError (or pydantic's ValidationError)."""
        body = request if isinstance(request, RewardRequest) else RewardRequest.model_validate(request)
        return await self._score(body)

    async def current_weights_version(self) -> int:
        """The version of the weights this replica scores with, after following reload.actor."""
        await self._follow_weights()
        return self.weights_version

    async def check_health(self) -> None:
        """Serve's periodic health check: a dead engine marks the replica unhealthy, Serve replaces it."""
        await self.backend.engine.check_health()

    def __del__(self):
        # Graceful shutdown: Serve has drained in-flight requests (graceful_shutdown_timeout_s);
        # stop vLLM's engine-core process instead of leaving it to interpreter exit.
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()

    # --- internals ---------------------------------------------------------------------------
    def _response_of(self, i: int, query: str, prompt: str) -> str:
        # Checked here, not by RewardRequest below: a ValidationError raised inside a route is a 500.
        if not prompt.strip():
            raise RequestError(f"prompts[{i}] is blank")
        # OpenRLHF decodes sequences with their special tokens: the common EOS/pad texts and this
        # tokenizer's are stripped from the end (genrm_ray.responses, shared with the adapter).
        try:
            response = response_of_query(query, prompt, i, (self.tokenizer.eos_token or "", self.tokenizer.pad_token or ""))
        except ValueError as e:
            raise RequestError(str(e)) from None
        if is_blank(response):
            raise RequestError(f"query[{i}] has no response after its prompt")
        return response

    def _check_limits(self, body: RewardRequest) -> int:
        s = self.cfg.scoring
        if len(body.items) > s.max_items:
            raise RequestError(f"items: {len(body.items)} items, over the server's limit of max_items={s.max_items}")
        k = s.cot.k if body.k is None else body.k
        if body.mode == "cot" and k > s.max_k:
            raise RequestError(f"k: {k} is over the server's limit of max_k={s.max_k}")
        return k

    def _verify_items(self, body: RewardRequest):
        from genrm_ray.scoring import VerifyItem

        out = []
        for i, item in enumerate(body.items):
            task = item.task or body.task or self.cfg.scoring.task
            if task not in self.tasks:
                raise RequestError(f"items[{i}].task: unknown task {task!r}; known: {self.tasks}")
            try:
                question = recover_question(task, item.prompt)
            except RequestError as e:
                raise RequestError(f"items[{i}].prompt: {e}") from None
            if is_blank(item.response):
                raise RequestError(f"items[{i}].response is blank")
            out.append(VerifyItem(task, question, item.response))
        return out

    def _prompt_lengths(self, items, mode: str, where: list[int]) -> list[int]:
        """Token count of each unique item's verification prompt; RequestError past the context."""
        build = prompts.verify_direct_prompt if mode == "direct" else prompts.verify_cot_prompt
        texts = [build(it.task, it.question, it.solution) for it in items]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        limit = self.cfg.engine.max_model_len
        extra = 1 if mode == "direct" else self.cfg.scoring.cot.max_rationale_tokens + self.question_tokens + 1 + COT_MARGIN_TOKENS
        for u, n in enumerate(lengths):
            if n + extra > limit:
                first = where.index(u)
                budget = self.cfg.scoring.cot.max_rationale_tokens
                need = f"{n} + 1 scored token" if mode == "direct" else (
                    f"{n} + up to {extra} for the rationale (scoring.cot.max_rationale_tokens={budget}) and verdict")
                raise RequestError(f"items[{first}]: the {mode} verification prompt needs {need} tokens, "
                                   f"over the model's context max_model_len={limit}; shorten prompt or response")
        return lengths

    async def _follow_weights(self) -> None:
        """Load reload.actor's weights in place when it has a newer version than this replica."""
        import ray

        r = self.cfg.reload
        if not r.actor:
            return
        if self.weights_source is None:  # looked up once: a lookup per request would ask the GCS each time
            try:
                self.weights_source = ray.get_actor(r.actor, namespace=r.namespace)
            except ValueError:
                raise RuntimeError(f"reload.actor: no actor {r.actor!r} in namespace {r.namespace!r} (the job that "
                                   "trains the verifier has stopped?)") from None
        source = self.weights_source
        if await source.weights_version.remote() <= self.weights_version:
            return
        async with self.gate.reload():
            version, ref = await source.published.remote()
            if version > self.weights_version:  # another request may have loaded it while this one waited
                await self.backend.load_weights(await ref)
                self.cache.clear()  # rewards of the old weights
                self.weights_version = version
                release_free_memory()  # the fetched and packed copies of the weights, freed above

    async def _score(self, body: RewardRequest) -> dict:
        await self._follow_weights()
        async with self.gate.request():
            return await self._score_now(body)

    async def _score_now(self, body: RewardRequest) -> dict:
        s = self.cfg.scoring
        k = self._check_limits(body)
        items = self._verify_items(body)
        keys, where = unique(items) if s.dedup else (items, list(range(len(items))))
        lengths = self._prompt_lengths(keys, body.mode, where)
        settings = None
        if body.mode == "cot":
            adaptive = s.cot.adaptive if body.adaptive is None else body.adaptive
            settings = dataclasses.replace(s.cot, k=k, adaptive=adaptive, min_k=min(s.cot.min_k, k))
        variant = (body.mode, settings and dataclasses.astuple(settings), body.return_rationales)
        results: list[Any] = [self.cache.get((variant, key)) for key in keys]
        todo = [u for u, r in enumerate(results) if r is None]
        cache_hits = len(keys) - len(todo)
        if todo:
            batch = [keys[u] for u in todo]
            if settings is None:
                scored = await self.scorer.ascore_direct(batch)
            else:
                scored = await self.scorer.ascore_cot(batch, settings, body.return_rationales)
            for u, score in zip(todo, scored):
                results[u] = score
                self.cache.put((variant, keys[u]), score)
        details = [ItemDetail(p_yes=r.p_yes, k_used=r.k_used, rationale_tokens=r.rationale_tokens,
                              unfinished=r.unfinished, rationales=r.rationales).model_dump() for r in results]
        n, n_unique = len(items), len(keys)
        rationale_tokens = sum(results[u].rationale_tokens for u in todo)
        self._record(body.mode, n, n_unique, cache_hits, [results[u] for u in todo], rationale_tokens)
        usage = Usage(items=n, unique_items=n_unique, cache_hits=cache_hits, scored=len(todo),
                      dedup_hit_rate=(n - n_unique) / n, cache_hit_rate=cache_hits / n_unique,
                      prompt_tokens=sum(lengths[u] for u in todo), rationale_tokens=rationale_tokens)
        return {"rewards": [results[u].reward for u in where], "details": [details[u] for u in where],
                "model": self.cfg.model_name, "mode": body.mode, "usage": usage.model_dump()}

    def _record(self, mode: str, n: int, n_unique: int, cache_hits: int, scored: list, rationale_tokens: int) -> None:
        m = self.metrics
        m.items.inc(n, tags={"mode": mode})
        if scored:
            m.scored.inc(len(scored), tags={"mode": mode})
        if n > n_unique:
            m.dedup_hits.inc(n - n_unique)
        if self.cache.size > 0:
            m.cache_lookups.inc(n_unique)
            if cache_hits:
                m.cache_hits.inc(cache_hits)
        if rationale_tokens:
            m.rationale_tokens.inc(rationale_tokens)
        if mode == "cot":
            for r in scored:
                m.k_used.observe(r.k_used)


def make_app(cfg: ServeConfig):
    """The bound Serve application for a loaded, checked config."""
    check_serve_config(cfg)
    return GenRMRewardServer.options(**deployment_options(cfg)).bind(cfg, auth_token(cfg))


def deploy(cfg: ServeConfig, port: int | None = None):
    """Start Serve's HTTP proxy on cfg.http.host and ``port`` (default cfg.http.port; if Serve already
    runs on this cluster its port stands) and run the app; returns its DeploymentHandle."""
    from ray import serve

    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port if port is None else port})
    return serve.run(make_app(cfg), name=cfg.http.app_name, route_prefix=cfg.http.route_prefix)


def build_app(args: dict[str, Any]):
    """Application builder for Serve config files and ``serve run``: ``args`` may hold ``config``
    (a serve YAML path), ``checkpoint`` and any dotted config key (``deployment.max_replicas``)."""
    args = dict(args)
    path = args.pop("config", None)
    overrides = list(args.pop("overrides", []) or [])
    overrides += [f"{key}={value}" for key, value in args.items()]
    return make_app(load_serve_config(path, overrides))


__all__ = ["GenRMRewardServer", "api", "build_app", "deploy", "make_app"]
