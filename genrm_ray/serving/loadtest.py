"""Load generation and replica bookkeeping for the reliability test and scripts
(tests/test_serving_reliability.py, benchmarks/serve_load.py).

Client retry policy (the documented one, docs/serving.md): scoring is idempotent, so a request that
fails with a connection error or a 5xx (a replica died under it, or none is ready yet) is retried
after a short backoff, up to ``max_attempts``; a 4xx is the client's mistake and is not retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import requests


@dataclass
class LoadReport:
    requests: int = 0  # completed with a 200 and one reward per item
    failures: int = 0  # gave up (4xx, wrong reward count, or out of attempts)
    retries: int = 0
    items: int = 0
    wall_s: float = 0.0
    p50_s: float = 0.0
    p99_s: float = 0.0
    rewards_per_s: float = 0.0
    errors: list[str] = field(default_factory=list)  # first few failure messages

    def to_dict(self) -> dict:
        return asdict(self)


def post_with_retry(session: requests.Session, url: str, body: dict, headers: dict, max_attempts: int = 8,
                    backoff_s: float = 0.5, timeout_s: float = 120) -> tuple[requests.Response | None, int, str]:
    """(final response or None, retries used, last error text)."""
    error = ""
    for attempt in range(max_attempts):
        try:
            r = session.post(url, json=body, headers=headers, timeout=timeout_s)
            if r.status_code < 500:
                return r, attempt, ""
            error = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as e:
            error = f"{type(e).__name__}: {e}"
        time.sleep(backoff_s * (attempt + 1))
    return None, max_attempts - 1, error


def run_load(url: str, make_body: Callable[[int], dict], *, clients: int = 16, total: int | None = 1000,
             headers: dict | None = None, stop: threading.Event | None = None, max_attempts: int = 8) -> LoadReport:
    """``clients`` threads post ``make_body(i)`` for i = 0, 1, ... until ``total`` requests are done
    (or ``stop`` is set, when total is None); each 200 must carry one reward per item."""
    headers = headers or {}
    report, latencies, lock = LoadReport(), [], threading.Lock()
    counter = iter(range(10**12))

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                i = next(counter)
            if (total is not None and i >= total) or (stop is not None and stop.is_set()):
                return
            body = make_body(i)
            start = time.perf_counter()
            r, retries, error = post_with_retry(session, url, body, headers, max_attempts)
            took = time.perf_counter() - start
            n = len(body.get("items") or body.get("query") or [])
            ok = r is not None and r.status_code == 200 and len(r.json().get("rewards", [])) == n
            with lock:
                report.retries += retries
                if ok:
                    report.requests += 1
                    report.items += n
                    latencies.append(took)
                else:
                    report.failures += 1
                    if len(report.errors) < 5:
                        report.errors.append(error or f"HTTP {r.status_code}: {r.text[:200]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    report.wall_s = time.perf_counter() - start
    if latencies:
        latencies.sort()
        report.p50_s = latencies[len(latencies) // 2]
        report.p99_s = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    report.rewards_per_s = report.items / report.wall_s if report.wall_s else 0.0
    return report


def running_replicas(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


def wait_for_replicas(app: str, deployment: str, want: int, timeout_s: float, below: bool = False) -> float:
    """Seconds until exactly ``want`` replicas run (``below``: fewer than ``want``); TimeoutError past
    ``timeout_s``."""
    start = time.monotonic()
    while (running_replicas(app, deployment) >= want) if below else (running_replicas(app, deployment) != want):
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{app}/{deployment}: {running_replicas(app, deployment)} replicas running, "
                               f"not {want}, after {timeout_s:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - start


def kill_one_replica(app: str, deployment: str) -> str:
    """Kill one running replica actor of ``deployment`` (as a crash would); returns its actor name."""
    import ray

    # Serve names replica actors SERVE_REPLICA::<app>#<deployment>#<id>, in the "serve" namespace.
    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                   if a["namespace"] == "serve" and a["name"].startswith(prefix))
    if not names:
        raise RuntimeError(f"no live replica of {app}/{deployment}")
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]
