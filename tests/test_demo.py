"""The README's main command runs: the demo end to end on a fresh HEADWATER_HOME (services started and stopped)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the subprocess's own limit: a busy machine needs more than the default 300 s
def test_demo_runs_end_to_end_and_reports_what_it_stored(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_URL", "HEADWATER_", "AZURE_STORAGE", "PREFECT_API_URL"))}  # fmt: skip
    env.update({"HEADWATER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)})
    out = subprocess.run([sys.executable, "scripts/demo.py", "--seconds", "5", "--no-prefect", "--down"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "tick price series" in out.stdout and "dead letters                       : 0" in out.stdout
    samples = int(out.stdout.split("tickers, ")[1].split(" trade samples")[0])
    assert samples > 100
    assert "headwater_stream_entries_added" in out.stdout and "headwater_worker_" in out.stdout  # metrics served
    assert "AAPL   alphavantage 1m bars  100" in out.stdout  # batch: Alpha Vantage bars through GX into TimeSeries
    assert "raw/transcripts/AAPL/" in out.stdout  # documents: a retrieval answer with its blob provenance
    assert "last_price" in out.stdout and "nearest(" in out.stdout  # features served from Redis
    assert not (tmp_path / "home" / "services.json").exists() or "redis" not in (tmp_path / "home" / "services.json").read_text()
