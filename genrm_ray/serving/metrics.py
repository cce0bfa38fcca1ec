"""Custom Serve metrics of a reward replica (``ray.serve.metrics``: Serve adds deployment, replica
and application tags). Ray exports them with a ``ray_`` prefix on each node's metrics export port
(Prometheus text), e.g. ``ray_genrm_items_total``."""

from __future__ import annotations

from ray.serve import metrics

LATENCY_BOUNDARIES_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]


class RewardMetrics:
    def __init__(self) -> None:
        self.requests = metrics.Counter("genrm_requests_total", description="Reward requests by route and status class",
                                        tag_keys=("route", "status"))
        self.items = metrics.Counter("genrm_items_total", description="Items in reward requests", tag_keys=("mode",))
        self.scored = metrics.Counter("genrm_items_scored_total", description="Unique items the engine scored",
                                      tag_keys=("mode",))
        self.dedup_hits = metrics.Counter("genrm_dedup_hits_total", description="Items answered by an identical item of the same request")
        self.cache_hits = metrics.Counter("genrm_cache_hits_total", description="Unique items answered from the LRU cache")
        self.cache_lookups = metrics.Counter("genrm_cache_lookups_total", description="Unique items looked up in the LRU cache")
        self.rationale_tokens = metrics.Counter("genrm_rationale_tokens_total", description="Tokens generated for CoT rationales")
        self.k_used = metrics.Histogram("genrm_k_used", description="Rationales drawn per scored CoT item",
                                        boundaries=[1, 2, 4, 8, 16, 32, 64])
        self.latency = metrics.Histogram("genrm_request_latency_s", description="Reward request latency in the replica",
                                         boundaries=LATENCY_BOUNDARIES_S, tag_keys=("route",))


_REPLICA_METRICS: RewardMetrics | None = None


def replica_metrics() -> RewardMetrics:
    """This process's metrics (one replica per process), shared by the replica and its HTTP middleware."""
    global _REPLICA_METRICS
    if _REPLICA_METRICS is None:
        _REPLICA_METRICS = RewardMetrics()
    return _REPLICA_METRICS
