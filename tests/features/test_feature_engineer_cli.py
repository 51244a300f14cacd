"""``python -m features.engineer``: the real-time worker (``--every``) and the Prefect flow, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from feature_scenario import EXPECTED, T, write_scenario

ROOT = Path(__file__).resolve().parents[2]


def _env(redis_url: str, key_prefix: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HEADWATER_REDIS_"))}
    env.update({"REDIS_URL": redis_url, "HEADWATER_REDIS_KEY_PREFIX": key_prefix, "PREFECT_HOME": str(tmp_path / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)})  # fmt: skip
    return env


def test_worker_recomputes_market_features_until_sigterm(store, redis_url, key_prefix, tmp_path):
    write_scenario(store)
    (tmp_path / "tickers.txt").write_text("# universe\nAAA\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "features.engineer", "--tickers-file", str(tmp_path / "tickers.txt"), "--every", "0.2"],
        cwd=ROOT, env=_env(redis_url, key_prefix, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while store.r.hget(store.layout.table("last_price", "v1"), "AAA") is None:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the worker wrote nothing"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["stopped"] is True
    assert store.r.hget(store.layout.table("news_sentiment_1h", "v1"), "AAA") is None  # market group only


@pytest.mark.slow
def test_prefect_flow_as_of_writes_the_scenario_values(store, redis_url, key_prefix, tmp_path, prefect_api_url):
    write_scenario(store)
    (tmp_path / "tickers.txt").write_text("AAA\nBRK.B\n")
    out = subprocess.run(
        [sys.executable, "-m", "features.engineer", "--tickers-file", str(tmp_path / "tickers.txt"),
         "--as-of", "2024-05-01T15:30:00Z"],
        cwd=ROOT, env={**_env(redis_url, key_prefix, tmp_path), "PREFECT_API_URL": prefect_api_url},
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["as_of_ms"] == T and summary["tickers"] == 2
    for name, expected in EXPECTED.items():
        assert float(store.r.hget(store.layout.table(name, "v1"), "AAA")) == pytest.approx(expected, rel=1e-12)
