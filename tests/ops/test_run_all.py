"""scripts/run_all.py (`make up`): starts the services, serves metrics, stops everything cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _env(redis_url: str, key_prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEADWATER_", "PREFECT_API_URL"))}
    env.update(REDIS_URL=redis_url, HEADWATER_REDIS_KEY_PREFIX=key_prefix, HEADWATER_STREAM_PARTITIONS="2",
               HEADWATER_LOG_LEVEL="INFO", HEADWATER_STREAM_LEASE_MS="2000")  # fmt: skip
    return env


def _pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"started \S+ \(pid (\d+)\)", output)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_runs_until_ctrl_c_then_stops_everything(redis_url: str, key_prefix: str) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "scripts/run_all.py", "--no-services", "--no-deploy", "--only",
                             "processors,metrics", "--workers", "1", "--metrics-port", str(port), "--grace", "15"],
                            cwd=ROOT, env=_env(redis_url, key_prefix), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:  # ready = the exporter answers and sees the worker's heartbeat
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if re.search(r"^headwater_workers_registered 1\.0$", text, re.M):
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.3)
        else:
            pytest.fail(f"not ready: {text[:500]}")
        assert 'headwater_stream_length{partition="1",stream="raw_market_data"}' in text
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "SIGINT: stopping 2 services" in out and "had to SIGKILL" not in out
    pids = _pids(out)
    assert len(pids) == 2 and not any(_alive(p) for p in pids)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)


def test_a_process_that_dies_stops_the_rest_and_is_reported(redis_url: str, key_prefix: str) -> None:
    with socket.socket() as busy:  # the exporter cannot bind: it exits at once
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "scripts/run_all.py", "--no-services", "--no-deploy", "--only",
                                 "processors,metrics", "--workers", "1", "--metrics-port", str(port)],
                                cwd=ROOT, env=_env(redis_url, key_prefix), capture_output=True, text=True, timeout=90)  # fmt: skip
    assert result.returncode == 1
    assert re.search(r"metrics exited with code 1 after .*nothing is restarted", result.stdout), result.stdout
    assert not any(_alive(p) for p in _pids(result.stdout))


def test_unknown_service_names_are_refused() -> None:
    result = subprocess.run([sys.executable, "scripts/run_all.py", "--only", "stremer"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0 and "unknown service(s): stremer" in result.stderr


def test_restart_brings_a_killed_process_back_with_backoff(redis_url: str, key_prefix: str) -> None:
    proc = subprocess.Popen([sys.executable, "scripts/run_all.py", "--no-services", "--no-deploy", "--only",
                             "processors", "--workers", "1", "--restart", "--restart-backoff", "0.5"],
                            cwd=ROOT, env=_env(redis_url, key_prefix), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None

        def until(pattern: str) -> re.Match[str]:
            for line in proc.stdout:
                lines.append(line)
                if m := re.search(pattern, line):
                    return m
            pytest.fail("run_all ended early:\n" + "".join(lines))

        first = int(until(r"started processors \(pid (\d+)\)")[1])
        until(r"1 services running")
        os.killpg(first, signal.SIGKILL)  # the whole pod: the pool and its worker
        until(r"processors exited with code -9 after [\d.]+s; restart 1 in 0\.5s")
        second = int(until(r"started processors \(pid (\d+)\)")[1])
        assert second != first and _alive(second) and not _alive(first)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out  # a run that needed restarts does not end "clean"
    assert "restarted: processors x1" in out and "had to SIGKILL" not in out
    assert not _alive(second)
