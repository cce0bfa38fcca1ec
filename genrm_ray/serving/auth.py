"""Optional bearer-token auth of a replica, checked in the HTTP middleware before the body is read.

The token is per process (one replica per process), set by the replica's constructor; the
middleware and the replica live in the same process but not in the same pickled module globals,
so the state lives here, in an importable module.
"""

from __future__ import annotations

import hmac

# Paths anyone may read: liveness for load balancers, and the API schema (no data in either).
OPEN_SUFFIXES = ("/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")

_TOKEN: str | None = None


def set_token(token: str | None) -> None:
    global _TOKEN
    _TOKEN = token or None


def allowed(path: str, authorization: str | None) -> bool:
    """True when no token is set, the path is open, or ``authorization`` is ``Bearer <token>``."""
    if _TOKEN is None or path.rstrip("/").endswith(OPEN_SUFFIXES):
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), _TOKEN.encode())
