"""A Prefect server (``prefect server start``) with its own ``PREFECT_HOME``, for deployments and the UI.

Flows run without it too (Prefect then starts a temporary API per process); the server is what keeps flow
runs, deployments and schedules across processes.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import urllib.request
from pathlib import Path

from devstack.process import LOOPBACK, ServiceHandle, launch, on_free_port

log = logging.getLogger("devstack")


def prefect_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether ``<api_url>/health`` answers 200."""
    with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:  # noqa: S310
        return bool(response.status == 200)


def start_prefect(home: Path, port: int | None = None, *, timeout: float = 90.0) -> ServiceHandle:
    """Start ``prefect server start`` on 127.0.0.1 with ``PREFECT_HOME=home``; wait for ``/api/health``."""
    home = Path(home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    script = Path(sys.executable).with_name("prefect")
    base_cmd = [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]

    def start(port: int) -> ServiceHandle:
        api_url = f"http://{LOOPBACK}:{port}/api"
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_UI_ENABLED", "PREFECT_PROFILE")}
        env.update(
            PREFECT_HOME=str(home),
            PREFECT_API_URL=api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="true",
        )
        cmd = [*base_cmd, "server", "start", "--host", LOOPBACK, "--port", str(port)]
        # cwd=home: the server must not pick up a prefect.toml / .env from wherever it was launched.
        return launch("prefect", cmd, port=port, url=api_url, log_path=home / "prefect-server.log",
                      ready=lambda: prefect_healthy(api_url), timeout=timeout, env=env, cwd=home)  # fmt: skip

    started = time.monotonic()
    handle = on_free_port(port, start)
    log.info("prefect server up on http://%s:%d (API %s) in %.1fs", LOOPBACK, handle.port, handle.url,
             time.monotonic() - started)  # fmt: skip
    return handle
