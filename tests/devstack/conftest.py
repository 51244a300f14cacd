"""Fixtures of the dev-stack tests: the product's embedded Redis Stack and a fresh HEADWATER_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import devstack


@pytest.fixture(scope="module")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.ServiceHandle]:
    """The product's embedded Redis Stack, always started here (even when REDIS_URL is set)."""
    handle = devstack.start_redis(tmp_path_factory.mktemp("embedded-redis"))
    yield handle
    handle.stop()


@pytest.fixture
def client(embedded_redis: devstack.ServiceHandle) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(embedded_redis.url, decode_responses=True) as c:
        yield c


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HEADWATER_HOME with no external services configured (OpenSSL cache shared with the install)."""
    lib_dir = devstack.ensure_libs()  # cached in the real home: do not download it again per test
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path))
    for names in devstack.EXTERNAL_ENV.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    for name in ("HEADWATER_STANDIN_WS_URL",):
        monkeypatch.delenv(name, raising=False)
    if lib_dir is not None:
        (tmp_path / "lib").symlink_to(lib_dir.parents[3])
    return tmp_path
