"""Processes of the development stack: launch in their own session, wait until ready, supervise, stop.

Every service is started the same way (``launch``): output appended to a log file, readiness polled with a
check that fails fast when the process exits, the port picked free and retried if someone else grabbed it
(``on_free_port``), and a stop that signals the process group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwater.log import redact_url
from headwater.settings import ServiceUnavailableError

log = logging.getLogger("devstack")

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


class ServiceError(ServiceUnavailableError):
    """A service of the development stack could not be prepared, started or reached."""


class PortInUseError(ServiceError):
    """The chosen port was taken between picking it and the server binding it."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def ipv6_loopback_available() -> bool:
    """Whether ``::1`` can be bound here (then servers listen on both loopbacks)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@dataclass
class ServiceHandle:
    """A service process started by this package.

    ``url`` is the connection information (Redis URL *with* the password, Blob connection string or Prefect
    API URL); it is kept out of ``repr`` -- print ``safe_url`` instead.
    """

    name: str
    pid: int
    port: int
    url: str = field(repr=False)
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. the stand-ins' ws_port

    @property
    def safe_url(self) -> str:
        """``url`` with secrets redacted."""
        return redact_url(self.url)

    def alive(self) -> bool:
        """Whether the process is still running (a zombie counts as dead)."""
        return pid_alive(self.pid, self.process)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group (graceful: Redis fsyncs its AOF), SIGKILL after ``timeout``, wait."""
        if not self.alive():
            return
        _signal_group(self.pid, signal.SIGTERM)
        if not _wait_dead(self.pid, self.process, timeout):
            log.warning("%s (pid %d) did not stop within %.0fs; killing it", self.name, self.pid, timeout)
            _signal_group(self.pid, signal.SIGKILL)
            _wait_dead(self.pid, self.process, 5.0)


def pid_alive(pid: int, process: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether ``pid`` runs (reaps it if it is our own exited child; a zombie counts as dead)."""
    if process is not None:
        return process.poll() is None
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def process_matches(pid: int, marker: str) -> bool:
    """Whether ``pid``'s executable or command line contains ``marker`` (guards against pid reuse)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in f"{exe} {cmdline}"


def _wait_dead(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while pid_alive(pid, process):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group our process leads (start_new_session), else just the process."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _log_tail(path: Path, since: int = 0, limit: int = 3000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(since, path.stat().st_size - limit))
            return f.read().decode(errors="replace").strip() or "(empty)"
    except OSError:
        return "(no log)"


def _wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    process: subprocess.Popen[bytes],
    log_path: Path,
    log_offset: int,
) -> None:
    """Poll ``check`` (exceptions = not yet) until it returns True; fail fast if the process exits."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    last_error: Exception | None = None
    while True:
        if process.poll() is not None:
            tail = _log_tail(log_path, log_offset)
            error = PortInUseError if re.search(r"(?i)address already in use|EADDRINUSE", tail) else ServiceError
            raise error(f"{what} exited with code {process.returncode} while starting; {log_path}:\n{tail}")
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{what} not ready after {timeout:.0f}s (last error: {last_error}); {log_path}:\n"
                f"{_log_tail(log_path, log_offset)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def launch(
    name: str,
    cmd: list[str],
    *,
    port: int,
    url: str,
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin_data: bytes | None = None,
) -> ServiceHandle:
    """Start ``cmd`` in its own session with output appended to ``log_path``; wait until ``ready``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        offset = log_file.tell()
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C in the terminal does not reach it mid-write
        )
    if stdin_data is not None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: the readiness check reports why
            process.stdin.write(stdin_data)
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    handle = ServiceHandle(name, process.pid, port, url, log_path, process)
    try:
        _wait_until(ready, what=name, timeout=timeout, process=process, log_path=log_path, log_offset=offset)
    except BaseException:
        handle.stop(timeout=5)
        raise
    return handle


def on_free_port(port: int | None, start: Callable[[int], ServiceHandle]) -> ServiceHandle:
    """Run ``start`` on ``port``, or on a picked free port with a retry if another process grabbed it."""
    if port is not None:
        return start(port)
    attempts = 3
    while True:
        try:
            return start(free_port())
        except PortInUseError:
            attempts -= 1
            if not attempts:
                raise
            log.debug("port taken before the server bound it; retrying on another port")
