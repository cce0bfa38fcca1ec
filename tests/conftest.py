"""Session-wide fixtures. Expensive things (one tiny model, one vLLM engine, one Ray cluster) are
built once per test session and shared; each fixture family lives in tests/fixtures/."""

import genrm_ray  # noqa: F401  (applies the cache/offline environment before anything else)

from tests.fixtures.models import *  # noqa: F401,F403
from tests.fixtures.ray_cluster import *  # noqa: F401,F403
from tests.fixtures.serving import *  # noqa: F401,F403
