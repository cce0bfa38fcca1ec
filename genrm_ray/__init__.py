"""genrm-ray: Generative Verifiers (Zhang et al., ICLR 2025) trained and served on Ray."""

from genrm_ray import env as _env

_env.configure()

__version__ = "0.1.0"
