"""Embedded services against real processes: Redis Stack, plain Redis, Azurite, Prefect, and the CLI."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from azure.storage.blob import BlobServiceClient
from redis.backoff import NoBackoff
from redis.commands.search.field import VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query
from redis.retry import Retry

from headwater import services


@pytest.fixture(scope="module")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ServiceHandle]:
    """The product's embedded Redis Stack, always started here (even when REDIS_URL is set)."""
    handle = services.start_redis(tmp_path_factory.mktemp("embedded-redis"))
    yield handle
    handle.stop()


@pytest.fixture
def client(embedded_redis: services.ServiceHandle) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(embedded_redis.url, decode_responses=True) as c:
        yield c


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HEADWATER_HOME with no external services configured (OpenSSL cache shared with the install)."""
    lib_dir = services.ensure_openssl11()  # cached in the real home: do not download it again per test
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path))
    for names in services.EXTERNAL_ENV.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    if lib_dir is not None:
        (tmp_path / "lib").symlink_to(lib_dir.parents[3])
    return tmp_path


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                raw = bytes.fromhex(addr_hex)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # per-word little endian
                found.add(str(ipaddress.ip_address(words)))
    return found


# ---------------------------------------------------------------------------------------------- Redis Stack


def test_redis_stack_lists_the_required_modules(client: redis.Redis) -> None:
    names = {m["name"] for m in client.module_list()}
    assert {"timeseries", "search", "ReJSON", "bf"} <= names
    versions = services.check_redis_modules(client)
    assert list(versions) == ["timeseries", "search", "ReJSON", "bf"]
    assert all(v[0].isdigit() for v in versions.values())


def test_redis_stack_module_commands_work(r: redis.Redis, key_prefix: str) -> None:
    r.execute_command("TS.ADD", f"{key_prefix}ts", 1000, 1.5, "DUPLICATE_POLICY", "LAST")
    assert r.execute_command("TS.GET", f"{key_prefix}ts") == [1000, 1.5]

    index = r.ft(f"{key_prefix}idx")
    index.create_index(
        [VectorField("v", "HNSW", {"TYPE": "FLOAT32", "DIM": 4, "DISTANCE_METRIC": "COSINE"})],
        definition=IndexDefinition(prefix=[f"{key_prefix}doc:"], index_type=IndexType.HASH),
    )
    r.hset(f"{key_prefix}doc:1", mapping={"v": struct.pack("4f", 1, 0, 0, 0)})
    r.hset(f"{key_prefix}doc:2", mapping={"v": struct.pack("4f", 0, 1, 0, 0)})
    query = Query("*=>[KNN 1 @v $q AS score]").return_fields("score").dialect(2)
    hits = index.search(query, query_params={"q": struct.pack("4f", 0.9, 0.1, 0, 0)})
    assert [doc.id for doc in hits.docs] == [f"{key_prefix}doc:1"]

    r.execute_command("JSON.SET", f"{key_prefix}json", "$", '{"a": 1}')
    assert json.loads(r.execute_command("JSON.GET", f"{key_prefix}json", "$.a")) == [1]
    assert r.execute_command("BF.ADD", f"{key_prefix}bf", "x") == 1


def test_embedded_redis_is_loopback_only_password_protected_and_aof(
    embedded_redis: services.ServiceHandle, client: redis.Redis
) -> None:
    bind = str(client.config_get("bind")["bind"]).split()
    assert bind[0] == "127.0.0.1" and set(bind[1:]) <= {"-::1"}
    assert _listening_addresses(embedded_redis.port) <= {"127.0.0.1", "::1"}
    assert client.config_get("protected-mode")["protected-mode"] == "yes"
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("appendfsync")["appendfsync"] == "everysec"

    anonymous = redis.Redis(host="127.0.0.1", port=embedded_redis.port, retry=Retry(NoBackoff(), 0))
    with anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    password = urllib.parse.urlsplit(embedded_redis.url).password
    assert password and password.encode() not in Path(f"/proc/{embedded_redis.pid}/cmdline").read_bytes()
    assert password not in repr(embedded_redis)


def test_check_redis_modules_names_what_a_plain_redis_lacks(tmp_path: Path) -> None:
    plain = services.start_redis(tmp_path, modules=False)
    try:
        with pytest.raises(services.MissingRedisModuleError) as caught:
            services.check_redis_modules(plain.url)
    finally:
        plain.stop()
    assert caught.value.missing == ["timeseries", "search", "ReJSON", "bf"]
    message = str(caught.value)
    assert "timeseries, search, ReJSON, bf" in message and "Redis 8" in message and "REDIS_URL" in message
    assert str(urllib.parse.urlsplit(plain.url).password) not in message  # the URL in the message is redacted


def test_check_redis_modules_without_module_permission_probes_commands(
    embedded_redis: services.ServiceHandle, client: redis.Redis, key_prefix: str
) -> None:
    user, password = f"{key_prefix}user", uuid.uuid4().hex
    client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all", "-module"])
    try:
        limited = f"redis://{urllib.parse.quote(user)}:{password}@127.0.0.1:{embedded_redis.port}/0"
        assert services.check_redis_modules(limited) == dict.fromkeys(services.REDIS_MODULES, "unknown")
    finally:
        client.acl_deluser(user)


def test_unreachable_redis_is_a_clear_error() -> None:
    with pytest.raises(services.ServiceError, match=r"cannot reach Redis at redis://:\*\*\*@127\.0\.0\.1"):
        services.check_redis_modules(f"redis://:secret@127.0.0.1:{services.free_port()}/0")


def test_redis_data_survives_a_restart(tmp_path: Path) -> None:
    first = services.start_redis(tmp_path, password="pw")
    with redis.Redis.from_url(first.url) as c:
        c.set("k", "v")
    first.stop()
    assert not first.alive()
    second = services.start_redis(tmp_path, password="pw")
    try:
        with redis.Redis.from_url(second.url) as c:
            assert c.get("k") == b"v"
    finally:
        second.stop()
    assert (tmp_path / "appendonlydir").is_dir()


def test_ensure_openssl11_is_cached() -> None:
    first = services.ensure_openssl11()
    started = time.monotonic()
    assert services.ensure_openssl11() == first
    assert time.monotonic() - started < 2
    if first is not None:
        assert {"libssl.so.1.1", "libcrypto.so.1.1"} <= {p.name for p in first.iterdir()}


# -------------------------------------------------------------------------------------------------- Azurite


def test_azurite_blob_round_trip(blob_connection_string: str) -> None:
    service = BlobServiceClient.from_connection_string(blob_connection_string)
    container = service.create_container(f"t-{uuid.uuid4().hex[:12]}")
    try:
        container.upload_blob("dir/hello.txt", b"hello headwater")
        assert container.download_blob("dir/hello.txt").readall() == b"hello headwater"
        assert [b.name for b in container.list_blobs()] == ["dir/hello.txt"]
    finally:
        container.delete_container()


# -------------------------------------------------------------------------------------------- secrets, URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cr3t@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://default:p%40ss@host.example:10000", "rediss://default:***@host.example:10000"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://h:1/0?password=x&db=2", "redis://h:1/0?password=***&db=2"),
        (
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==;EndpointSuffix=core.windows.net",
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=***;EndpointSuffix=core.windows.net",
        ),
        (
            "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=1&sig=z",
            "BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=***",
        ),
    ],
)
def test_redact_url_hides_secrets(url: str, expected: str) -> None:
    assert services.redact_url(url) == expected


def test_redis_password_is_generated_once_and_private(home: Path) -> None:
    password = services.redis_password()
    assert len(password) >= 40 and services.redis_password() == password
    path = home / "secrets" / "redis.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# ---------------------------------------------------------------------------------------- up / status / down


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater.services", *args], capture_output=True, text=True, env=os.environ.copy(),
        timeout=120, check=False,
    )  # fmt: skip


def test_up_status_env_down_round_trip(home: Path) -> None:
    with pytest.raises(services.ServicesNotRunningError, match=r"python -m headwater\.services up"):
        services.resolve()

    endpoints = services.up(prefect=False, standins=False)
    try:
        report = services.status()
        assert report["redis"]["state"] == report["azurite"]["state"] == "running"
        assert report["redis"]["healthy"] and report["azurite"]["healthy"]
        assert report["prefect"]["state"] == "stopped" and endpoints.prefect_api_url is None
        password = services.redis_password()
        assert report["redis"]["url"] == f"redis://:***@127.0.0.1:{report['redis']['port']}/0"
        assert password not in (home / "services.json").read_text() and password not in repr(endpoints)
        with redis.Redis.from_url(endpoints.redis_url) as c:
            assert c.ping()

        pids = {n: report[n]["pid"] for n in ("redis", "azurite")}
        again = _cli("up", "--no-prefect", "--no-standins", "--json")  # idempotent: nothing restarted
        assert again.returncode == 0, again.stderr
        assert {n: json.loads(again.stdout)[n]["pid"] for n in pids} == pids
        assert "already running" in again.stderr and password not in again.stderr + again.stdout

        cli_status = _cli("status", "--json")
        assert json.loads(cli_status.stdout)["redis"]["healthy"] is True

        exports = _cli("env").stdout.splitlines()
        assert f"export REDIS_URL={endpoints.redis_url}" in exports
        assert any(line.startswith("export AZURE_STORAGE_CONNECTION_STRING=") for line in exports)
    finally:
        stopped = services.down()
    assert stopped == ["azurite", "redis"]
    assert {v["state"] for v in services.status().values()} == {"stopped"}
    assert _cli("env").returncode == 1


def test_up_uses_an_external_redis_and_checks_its_modules(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    embedded_redis: services.ServiceHandle,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    plain = services.start_redis(tmp_path_factory.mktemp("plain"), modules=False)
    try:
        monkeypatch.setenv("REDIS_URL", plain.url)
        with pytest.raises(services.MissingRedisModuleError):
            services.up(prefect=False, standins=False)
        assert not (home / "services.json").exists()  # refused before starting anything
    finally:
        plain.stop()

    monkeypatch.setenv("REDIS_URL", embedded_redis.url)
    try:
        endpoints = services.up(prefect=False, standins=False)
        assert endpoints.redis_url == embedded_redis.url
        report = services.status()
        assert report["redis"] == {"state": "external", "url": embedded_redis.safe_url, "healthy": True}
        assert report["azurite"]["state"] == "running"
    finally:
        assert services.down() == ["azurite"]
    assert embedded_redis.alive()


# --------------------------------------------------------------------------------------------------- Prefect


@pytest.mark.slow
def test_prefect_server_starts_and_reports_healthy(tmp_path: Path) -> None:
    handle = services.start_prefect(tmp_path / "prefect")
    try:
        assert handle.url == f"http://127.0.0.1:{handle.port}/api"
        with urllib.request.urlopen(f"{handle.url}/health", timeout=10) as response:
            assert response.status == 200
        assert (tmp_path / "prefect" / "prefect.db").exists()  # state in PREFECT_HOME, not ~/.prefect
    finally:
        handle.stop()
    assert not handle.alive()


def test_up_starts_the_provider_standins_and_settings_find_them(tmp_path, monkeypatch):
    """`up` runs the stand-ins as a service; simulated providers resolve to them with no configuration."""
    import requests

    from headwater.settings import Settings

    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path / "home"))
    for name in ("HEADWATER_STANDIN_HTTP_URL", "HEADWATER_STANDIN_WS_URL", "REDIS_URL", "HEADWATER_REDIS_URL",
                 "AZURE_STORAGE_CONNECTION_STRING", "HEADWATER_BLOB_CONNECTION_STRING", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    try:
        endpoints = services.up(prefect=False)
        assert endpoints.standin_http_url and endpoints.standin_ws_url.endswith("/stocks")
        settings = Settings()
        assert settings.alphavantage.resolved_base_url(settings.standins) == endpoints.standin_http_url + "/alphavantage"
        assert settings.polygon.resolved_ws_url(settings.standins) == endpoints.standin_ws_url
        body = requests.get(f"{endpoints.standin_http_url}/alphavantage/query",
                            params={"function": "TIME_SERIES_DAILY", "symbol": "AAPL", "apikey": "demo-key"}, timeout=30).json()
        assert body["Meta Data"]["2. Symbol"] == "AAPL"
        assert services.status()["standins"]["healthy"] is True
    finally:
        assert "standins" in services.down()
