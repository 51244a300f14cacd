"""The persistent embedded stack: ``up`` starts what is neither running nor configured elsewhere, ``down`` stops it.

Services start in the order of ``SERVICES`` and stop in reverse. A service is skipped when the environment
points at an external instance (``EXTERNAL_ENV``, the names ``headwater.settings`` reads). What runs is
recorded in ``$HEADWATER_HOME/services.json`` and its endpoints in ``services.env`` (see ``devstack.state``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.azurite import azurite_connection_string, blob_ready, start_azurite
from devstack.prefect_server import prefect_healthy, start_prefect
from devstack.process import LOOPBACK, ServiceError, ServiceHandle, pid_alive, process_matches
from devstack.redis_stack import redis_ping, start_redis
from devstack.standins import standins_healthy, start_standins, ws_url
from devstack.state import (
    State, ServicesNotRunningError, file_lock, read_state, redis_password, state_path, write_services_env, write_state,
)
from headwater.log import redact_url
from headwater.settings import ServiceUnavailableError, headwater_home
from headwater.storage.redis import MissingRedisModuleError, check_redis_modules

log = logging.getLogger("devstack")

#: Service names, in start order (``down`` stops them in reverse). "standins" are the local provider
#: stand-ins (Polygon WebSocket + every REST provider), used by providers in simulated mode.
SERVICES = ("redis", "azurite", "prefect", "standins")

#: Environment variables that point a service at an external instance (first set wins, as in settings).
EXTERNAL_ENV: dict[str, tuple[str, ...]] = {
    "redis": ("HEADWATER_REDIS_URL", "REDIS_URL"),
    "azurite": ("HEADWATER_BLOB_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"),
    "prefect": ("PREFECT_API_URL",),
    "standins": ("HEADWATER_STANDIN_HTTP_URL",),
}

#: The variable ``services.env`` sets for each running embedded service (the stand-ins add HEADWATER_STANDIN_WS_URL).
#: The HEADWATER_ names, so that a REDIS_URL / AZURE_STORAGE_CONNECTION_STRING in the environment still wins.
SERVICES_ENV = {
    "redis": "HEADWATER_REDIS_URL",
    "azurite": "HEADWATER_BLOB_CONNECTION_STRING",
    "prefect": "PREFECT_API_URL",
    "standins": "HEADWATER_STANDIN_HTTP_URL",
}

#: What identifies each service's process in /proc (guards against pid reuse).
_PROCESS_MARKERS = {"redis": "redis-server", "azurite": "azurite-blob", "prefect": "prefect", "standins": "-m standins"}

#: Processes ``up`` started from this interpreter, by pid: they outlive the call, and ``down`` reaps them.
_detached: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Endpoints:
    """Where Headwater's services are. ``prefect_api_url`` is None = Prefect's own ephemeral API."""

    redis_url: str
    blob_connection_string: str
    prefect_api_url: str | None
    standin_http_url: str | None = None
    standin_ws_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"Endpoints(redis_url={redact_url(self.redis_url)!r}, "
            f"blob_connection_string={redact_url(self.blob_connection_string)!r}, "
            f"prefect_api_url={self.prefect_api_url!r}, standin_http_url={self.standin_http_url!r}, "
            f"standin_ws_url={self.standin_ws_url!r})"
        )


def _external(name: str) -> str | None:
    """The external endpoint configured for a service in the environment, if any."""
    for var in EXTERNAL_ENV[name]:
        if os.environ.get(var):
            return os.environ[var]
    return None


def _record(handle: ServiceHandle) -> dict[str, Any]:
    """What services.json keeps about a service: never the password."""
    return {
        **handle.extra,
        "pid": handle.pid,
        "port": handle.port,
        "log": str(handle.log_path),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _running(state: State, name: str) -> dict[str, Any] | None:
    entry = state.get(name)
    pid = int(entry["pid"]) if entry else 0
    if entry and pid_alive(pid, _detached.get(pid)) and process_matches(pid, _PROCESS_MARKERS[name]):
        return entry
    return None


def _embedded_url(name: str, port: int) -> str:
    if name == "redis":
        return f"redis://:{urllib.parse.quote(redis_password(create=False), safe='')}@{LOOPBACK}:{port}/0"
    if name == "azurite":
        return azurite_connection_string(port)
    if name == "standins":
        return f"http://{LOOPBACK}:{port}"
    return f"http://{LOOPBACK}:{port}/api"


def _healthy(name: str, url: str) -> bool:
    probe = {"redis": redis_ping, "azurite": blob_ready, "prefect": prefect_healthy, "standins": standins_healthy}[name]
    try:
        return probe(url)
    except Exception:  # noqa: BLE001 - any failure is "unhealthy"
        return False


def _services_env(state: State) -> dict[str, str]:
    """The ``services.env`` variables of the embedded services running per ``state``."""
    variables: dict[str, str] = {}
    for name in SERVICES:
        entry = _running(state, name)
        if entry:
            variables[SERVICES_ENV[name]] = _embedded_url(name, int(entry["port"]))
            if name == "standins" and "ws_port" in entry:
                variables["HEADWATER_STANDIN_WS_URL"] = ws_url(int(entry["ws_port"]))
    return variables


def _save(state: State) -> None:
    """Record ``state`` in services.json and the running services' endpoints in services.env."""
    write_state(state)
    write_services_env(_services_env(state))


def up(*, prefect: bool = True, standins: bool = True) -> Endpoints:
    """Start the embedded services that are not running and not configured externally; return endpoints.

    An external Redis is still checked for the required modules (before anything is started).
    """
    home = headwater_home()
    home.mkdir(parents=True, exist_ok=True)
    external_redis = _external("redis")
    if external_redis:
        try:
            check_redis_modules(external_redis)
        except MissingRedisModuleError:
            raise
        except ServiceUnavailableError as exc:
            raise ServiceError(
                f'{exc}. If REDIS_URL came from `eval "$(python -m devstack env)"` (or services.env) for an '
                "embedded stack that is now down, unset REDIS_URL, AZURE_STORAGE_CONNECTION_STRING and PREFECT_API_URL."
            ) from exc
        log.info("redis: using external %s", redact_url(external_redis))
    with file_lock(home / ".services.lock"):
        state = read_state()
        starters: dict[str, Callable[[], ServiceHandle]] = {
            "redis": lambda: start_redis(home / "redis", password=redis_password()),
            "azurite": lambda: start_azurite(home / "azurite"),
            "prefect": lambda: start_prefect(home / "prefect"),
            "standins": lambda: start_standins(home / "standins"),
        }
        for name in SERVICES:
            if (name == "prefect" and not prefect) or (name == "standins" and not standins):
                continue
            external = _external(name)
            if external:
                if name != "redis":
                    log.info("%s: using external %s", name, redact_url(external))
                continue
            entry = _running(state, name)
            if entry:
                log.info("%s already running on %s:%d (pid %d)", name, LOOPBACK, entry["port"], entry["pid"])
                continue
            handle = starters[name]()
            if handle.process is not None:
                _detached[handle.pid] = handle.process
            state[name] = _record(handle)
            _save(state)  # after each start, so `down` can stop it even if a later one fails
        write_services_env(_services_env(state))  # also when nothing had to start
    return resolve()


def down(timeout: float = 15.0) -> list[str]:
    """Stop the services ``up`` started (stand-ins, Prefect, Azurite, then Redis); return the names stopped."""
    home = headwater_home()
    stopped: list[str] = []
    if not state_path().exists():
        write_services_env({})
        return stopped
    with file_lock(home / ".services.lock"):
        state = read_state()
        for name in reversed(SERVICES):
            entry = state.pop(name, None)
            if entry is None:
                continue
            if _running({name: entry}, name):
                pid = int(entry["pid"])
                handle = ServiceHandle(name, pid, int(entry["port"]), "", Path(entry["log"]), _detached.pop(pid, None))
                handle.stop(timeout)
                log.info("%s stopped (pid %d)", name, handle.pid)
                stopped.append(name)
            _save(state)
        write_services_env({})
    return stopped


def status() -> dict[str, dict[str, Any]]:
    """Per service: ``state`` (running/stopped/external), ``healthy``, and port/pid/log/url when known.

    URLs are redacted.
    """
    state = read_state()
    report: dict[str, dict[str, Any]] = {}
    for name in SERVICES:
        external = _external(name)
        entry = _running(state, name)
        if external:
            report[name] = {"state": "external", "url": redact_url(external), "healthy": _healthy(name, external)}
        elif entry:
            url = _embedded_url(name, int(entry["port"]))
            report[name] = {
                "state": "running",
                "port": entry["port"],
                "pid": entry["pid"],
                "log": entry["log"],
                "url": redact_url(url),
                "healthy": _healthy(name, url),
            }
        else:
            report[name] = {"state": "stopped", "healthy": False}
    return report


def resolve() -> Endpoints:
    """External endpoints where configured, else the running embedded ones, else a clear error.

    The Redis URL carries the install's password: do not log it (``redact_url``).
    """
    state = read_state()
    found: dict[str, str | None] = {}
    for name in SERVICES:
        external = _external(name)
        entry = None if external else _running(state, name)
        found[name] = external or (_embedded_url(name, int(entry["port"])) if entry else None)
    missing = [name for name in ("redis", "azurite") if found[name] is None]
    if missing:
        hint = " or ".join(f"set {' / '.join(EXTERNAL_ENV[n])}" for n in missing)
        raise ServicesNotRunningError(
            f"{' and '.join(missing)} not running and not configured: run `python -m devstack up` "
            f"(or `make services` / `make demo`), or {hint}."
        )
    standin_ws = os.environ.get("HEADWATER_STANDIN_WS_URL")
    standins_entry = _running(state, "standins")
    if standin_ws is None and standins_entry and "ws_port" in standins_entry:
        standin_ws = ws_url(int(standins_entry["ws_port"]))
    return Endpoints(str(found["redis"]), str(found["azurite"]), found["prefect"], found["standins"], standin_ws)
