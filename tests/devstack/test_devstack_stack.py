"""The embedded stack against real processes: Azurite, Prefect, stand-ins, up / status / env / down and the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from azure.storage.blob import BlobServiceClient

import devstack
from headwater.log import redact_url
from headwater.settings import NotConfiguredError, Settings, StandInSettings
from headwater.storage.blob import resolve_connection_string
from headwater.storage.redis import MissingRedisModuleError, resolve_redis_url


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
    assert redact_url(url) == expected


def test_redis_password_is_generated_once_and_private(home: Path) -> None:
    password = devstack.redis_password()
    assert len(password) >= 40 and devstack.redis_password() == password
    path = home / "secrets" / "redis.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# ---------------------------------------------------------------------------------------- up / status / down


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args], capture_output=True, text=True, env=os.environ.copy(),
        timeout=120, check=False,
    )  # fmt: skip


def test_up_status_env_down_round_trip(home: Path) -> None:
    with pytest.raises(devstack.ServicesNotRunningError, match=r"python -m devstack up"):
        devstack.resolve()
    with pytest.raises(NotConfiguredError, match=r"python -m devstack up.*REDIS_URL"):  # the core says the same
        resolve_redis_url()

    endpoints = devstack.up(prefect=False, standins=False)
    try:
        services_env = home / "services.env"  # what the core reads: the endpoints, readable by the owner only
        assert stat.S_IMODE(services_env.stat().st_mode) == 0o600
        assert f"HEADWATER_REDIS_URL={endpoints.redis_url}" in services_env.read_text().splitlines()
        assert resolve_redis_url() == endpoints.redis_url
        assert resolve_connection_string() == endpoints.blob_connection_string
        assert Settings().standins.http_url is None  # --no-standins: none recorded
        report = devstack.status()
        assert report["redis"]["state"] == report["azurite"]["state"] == "running"
        assert report["redis"]["healthy"] and report["azurite"]["healthy"]
        assert report["prefect"]["state"] == "stopped" and endpoints.prefect_api_url is None
        password = devstack.redis_password()
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
        stopped = devstack.down()
    assert stopped == ["azurite", "redis"]
    assert {v["state"] for v in devstack.status().values()} == {"stopped"}
    assert not services_env.exists()
    assert _cli("env").returncode == 1


def test_up_uses_an_external_redis_and_checks_its_modules(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    embedded_redis: devstack.ServiceHandle,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    plain = devstack.start_redis(tmp_path_factory.mktemp("plain"), modules=False)
    try:
        monkeypatch.setenv("REDIS_URL", plain.url)
        with pytest.raises(MissingRedisModuleError):
            devstack.up(prefect=False, standins=False)
        assert not (home / "services.json").exists()  # refused before starting anything
    finally:
        plain.stop()

    monkeypatch.setenv("REDIS_URL", embedded_redis.url)
    try:
        endpoints = devstack.up(prefect=False, standins=False)
        assert endpoints.redis_url == embedded_redis.url
        report = devstack.status()
        assert report["redis"] == {"state": "external", "url": embedded_redis.safe_url, "healthy": True}
        assert report["azurite"]["state"] == "running"
    finally:
        assert devstack.down() == ["azurite"]
    assert embedded_redis.alive()


# --------------------------------------------------------------------------------------------------- Prefect


@pytest.mark.slow
def test_prefect_server_starts_and_reports_healthy(tmp_path: Path) -> None:
    handle = devstack.start_prefect(tmp_path / "prefect")
    try:
        assert handle.url == f"http://127.0.0.1:{handle.port}/api"
        with urllib.request.urlopen(f"{handle.url}/health", timeout=10) as response:
            assert response.status == 200
        assert (tmp_path / "prefect" / "prefect.db").exists()  # state in PREFECT_HOME, not ~/.prefect
    finally:
        handle.stop()
    assert not handle.alive()


def test_up_starts_the_provider_standins_and_settings_find_them(home: Path) -> None:
    """`up` runs the stand-ins as a service; simulated providers resolve to them with no configuration."""
    import requests

    try:
        endpoints = devstack.up(prefect=False)
        assert endpoints.standin_http_url and endpoints.standin_ws_url.endswith("/stocks")
        settings = Settings()
        assert settings.alphavantage.resolved_base_url(settings.standins) == endpoints.standin_http_url + "/alphavantage"
        assert settings.polygon.resolved_ws_url(settings.standins) == endpoints.standin_ws_url
        body = requests.get(f"{endpoints.standin_http_url}/alphavantage/query",
                            params={"function": "TIME_SERIES_DAILY", "symbol": "AAPL", "apikey": "demo-key"}, timeout=30).json()
        assert body["Meta Data"]["2. Symbol"] == "AAPL"
        assert devstack.status()["standins"]["healthy"] is True
        assert not StandInSettings(discover=False).http_url  # discovery off (as in a cluster): services.env unread
    finally:
        assert "standins" in devstack.down()
