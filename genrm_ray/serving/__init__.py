"""Ray Serve reward endpoint for trained GenRM checkpoints (docs/serving.md).

Imports stay light: the Serve app (`genrm_ray.serving.app`) pulls in Ray Serve and FastAPI, and
vLLM only inside a replica.
"""

from genrm_ray.serving.config import ServeConfig, load_serve_config

__all__ = ["ServeConfig", "load_serve_config"]
