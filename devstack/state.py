"""What the development stack keeps in ``$HEADWATER_HOME``: ``services.json``, ``services.env``, the Redis password.

* ``services.json`` -- per running service its pid, port, log and start time (never a secret); ``down`` and
  ``status`` read it.
* ``services.env`` -- the embedded services' endpoints as ``NAME=value`` lines (mode 0600: the Redis URL
  carries the password). The core's settings read it when the environment does not say otherwise; it is
  written whenever ``services.json`` changes and removed when nothing runs.
* ``secrets/redis.password`` -- the install-wide Redis password, generated once (mode 0600).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from devstack.process import ServiceError
from headwater.settings import headwater_home, services_env_file

State = dict[str, dict[str, Any]]


class ServicesNotRunningError(ServiceError):
    """No external configuration and no running embedded service."""


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def state_path() -> Path:
    return headwater_home() / "services.json"


def read_state() -> State:
    try:
        return dict(json.loads(state_path().read_text()))
    except FileNotFoundError:
        return {}


def write_state(state: State) -> None:
    path = state_path()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_services_env(variables: Mapping[str, str]) -> None:
    """Replace ``services.env`` with ``variables`` (mode 0600), or remove it when there are none.

    Values are shell-quoted, so the file is valid for pydantic-settings (python-dotenv) and for ``. file``.
    """
    path = services_env_file()
    if not variables:
        path.unlink(missing_ok=True)
        return
    lines = [
        "# The embedded services' endpoints, written by `python -m devstack up` and removed by `down`.",
        "# Read by headwater.settings when the environment does not set them. Contains the Redis password.",
        *(f"{name}={shlex.quote(value)}" for name, value in variables.items()),
    ]
    tmp = path.with_suffix(".env.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)  # an older tmp file may have had other bits
    os.replace(tmp, path)


def redis_password(*, create: bool = True) -> str:
    """The install-wide Redis password (``$HEADWATER_HOME/secrets/redis.password``, mode 0600).

    Generated once with ``secrets.token_urlsafe(32)``. Never log or print it.
    """
    path = headwater_home() / "secrets" / "redis.password"
    if not path.exists():
        if not create:
            raise ServicesNotRunningError(f"no Redis password at {path}; run `python -m devstack up`")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
            os.chmod(path, 0o600)
    return path.read_text().strip()
