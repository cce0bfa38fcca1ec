"""Session-wide fixtures, and the guard of the fast tier.

Expensive things (one tiny model, one vLLM engine, one Ray cluster) are built once per test session and
shared; each fixture family lives in tests/fixtures/.

Two tiers: tests that start Ray, vLLM or DeepSpeed carry ``@pytest.mark.integration`` (given here to
every test that uses the Ray cluster, vLLM engine or reward server fixtures); the rest are the fast
tier (``make test-fast``: ``pytest -m "not integration"``). When a session runs the fast tier alone,
a test (or a test module, at import) that loads ray, vllm or deepspeed fails, naming itself: mark it
integration or keep the import out. (transformers imports deepspeed whenever it is installed,
so for DeepSpeed the sign is a torch.distributed process group, which every DeepSpeed engine needs.)
"""

import sys

import pytest

import genrm_ray.env

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load

from tests.fixtures.models import *  # noqa: E402,F401,F403
from tests.fixtures.ray_cluster import *  # noqa: E402,F401,F403
from tests.fixtures.serving import *  # noqa: E402,F401,F403

HEAVY = ("ray", "vllm")
# A test that uses one of these session fixtures (directly or through another fixture) is integration.
HEAVY_FIXTURES = {"ray_cluster", "vllm_backend", "reward_server"}
_state = {"fast_only": False, "imported_by": {}, "baseline": set()}


def _heavy_loaded() -> set[str]:
    loaded = {name for name in HEAVY if name in sys.modules}
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        loaded.add("deepspeed (a torch.distributed process group)")
    return loaded


def pytest_collectreport(report):
    # Which test module first imported a heavy package at collection time.
    for name in _heavy_loaded():
        _state["imported_by"].setdefault(name, report.nodeid)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") or HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    items = session.items
    _state["fast_only"] = bool(items) and not any(item.get_closest_marker("integration") for item in items)
    if not _state["fast_only"]:
        return
    # A module of integration tests may import Ray for them; a module with fast tests selected may not.
    selected = {item.nodeid.split("::")[0] for item in items}
    offenders = {name: node for name, node in _state["imported_by"].items() if node.split("::")[0] in selected}
    if offenders:
        where = ", ".join(f"{name} (by {node or 'conftest'})" for name, node in offenders.items())
        raise pytest.UsageError(f"the fast tier must not import ray, vllm or deepspeed; collection imported {where}")
    _state["baseline"] = _heavy_loaded()


@pytest.fixture(autouse=True)
def _fast_tier_needs_no_heavy_stack(request):
    yield
    if _state["fast_only"] and (loaded := _heavy_loaded() - _state["baseline"]):
        _state["baseline"] |= loaded  # report each import once, at the test that made it
        pytest.fail(f"{request.node.nodeid} imported {sorted(loaded)} in the fast tier: mark it "
                    "@pytest.mark.integration or keep the import out of its path", pytrace=False)
