"""The provider stand-ins (``python -m standins``: Polygon WebSocket + every REST provider) as a service."""

from __future__ import annotations

import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.process import LOOPBACK, REPO_ROOT, ServiceHandle, free_port, launch, on_free_port

log = logging.getLogger("devstack")


def standins_healthy(http_url: str, timeout: float = 2.0) -> bool:
    """Whether the HTTP stand-in's ``/_control/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"{http_url}/_control/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_standins(data_dir: Path, *, rate: float = 2000.0, timeout: float = 60.0) -> ServiceHandle:
    """Start the provider stand-ins (``python -m standins``) on two free loopback ports.

    The handle's ``port`` is the HTTP stand-in's; the WebSocket port is in ``handle.extra["ws_port"]``.
    """
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> ServiceHandle:
        ws_port = free_port()
        cmd = [sys.executable, "-m", "standins", "--host", LOOPBACK, "--http-port", str(port),
               "--ws-port", str(ws_port), "--rate", str(rate)]  # fmt: skip
        url = f"http://{LOOPBACK}:{port}"
        handle = launch("standins", cmd, port=port, url=url, log_path=data_dir / "standins.log",
                        ready=lambda: standins_healthy(url), timeout=timeout, cwd=REPO_ROOT,
                        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})  # fmt: skip
        handle.extra["ws_port"] = ws_port
        return handle

    started = time.monotonic()
    handle = on_free_port(None, start)
    log.info("provider stand-ins up: REST http://%s:%d, WebSocket ws://%s:%d/stocks in %.1fs", LOOPBACK, handle.port,
             LOOPBACK, handle.extra["ws_port"], time.monotonic() - started)  # fmt: skip
    return handle


def ws_url(ws_port: int) -> str:
    """The Polygon WebSocket stand-in's URL on ``ws_port``."""
    return f"ws://{LOOPBACK}:{ws_port}/stocks"
