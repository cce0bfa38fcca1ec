"""Session-wide fixtures. Expensive things (one tiny model, one vLLM engine, one Ray cluster) are
built once per test session and shared; each fixture family lives in tests/fixtures/."""

import genrm_ray.env  # noqa: E402

genrm_ray.env.configure(entry_point=True)  # project caches + offline settings, before torch / vLLM / Ray load

from tests.fixtures.models import *  # noqa: F401,F403
from tests.fixtures.ray_cluster import *  # noqa: F401,F403
from tests.fixtures.serving import *  # noqa: F401,F403
