"""Short versions of the benchmark scripts that have one (--quick, the tiny model), so that they keep
working. Their speeds are not asserted: they live in benchmarks/results/ and docs/performance.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration  # starts vLLM engines (in subprocesses)


def test_cpu_engine_settings_quick(tmp_path):
    out = tmp_path / "settings.json"
    proc = subprocess.run([sys.executable, "benchmarks/cpu_engine_settings.py", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["settings"]
    assert len(results) == 2
    for r in results.values():
        assert r["items"] == 16 and r["score_s"] > 0 and r["generated_tokens"] > 0
