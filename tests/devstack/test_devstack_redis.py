"""The embedded Redis Stack against real processes: modules, loopback/password/AOF, restarts, OpenSSL 1.1."""

from __future__ import annotations

import ipaddress
import json
import struct
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.commands.search.field import VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query
from redis.retry import Retry

import devstack
from devstack.redis_stack import MODULE_FILES
from headwater.settings import ServiceUnavailableError
from headwater.storage.redis import REDIS_MODULES, MissingRedisModuleError, check_redis_modules


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
    versions = check_redis_modules(client)
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
    embedded_redis: devstack.ServiceHandle, client: redis.Redis
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


def test_every_required_module_has_its_library_in_the_wheel() -> None:
    assert set(MODULE_FILES) == set(REDIS_MODULES)
    lib = devstack.redis_server_binary().parent.parent / "lib"
    assert all((lib / so_name).exists() for so_name, _ in MODULE_FILES.values())


def test_check_redis_modules_names_what_a_plain_redis_lacks(tmp_path: Path) -> None:
    plain = devstack.start_redis(tmp_path, modules=False)
    try:
        with pytest.raises(MissingRedisModuleError) as caught:
            check_redis_modules(plain.url)
    finally:
        plain.stop()
    assert caught.value.missing == ["timeseries", "search", "ReJSON", "bf"]
    message = str(caught.value)
    assert "timeseries, search, ReJSON, bf" in message and "Redis 8" in message and "REDIS_URL" in message
    assert str(urllib.parse.urlsplit(plain.url).password) not in message  # the URL in the message is redacted


def test_check_redis_modules_without_module_permission_probes_commands(
    embedded_redis: devstack.ServiceHandle, client: redis.Redis, key_prefix: str
) -> None:
    user, password = f"{key_prefix}user", uuid.uuid4().hex
    client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all", "-module"])
    try:
        limited = f"redis://{urllib.parse.quote(user)}:{password}@127.0.0.1:{embedded_redis.port}/0"
        assert check_redis_modules(limited) == dict.fromkeys(REDIS_MODULES, "unknown")
    finally:
        client.acl_deluser(user)


def test_unreachable_redis_is_a_clear_error() -> None:
    with pytest.raises(ServiceUnavailableError, match=r"cannot reach Redis at redis://:\*\*\*@127\.0\.0\.1"):
        check_redis_modules(f"redis://:secret@127.0.0.1:{devstack.free_port()}/0")


def test_redis_data_survives_a_restart(tmp_path: Path) -> None:
    first = devstack.start_redis(tmp_path, password="pw")
    with redis.Redis.from_url(first.url) as c:
        c.set("k", "v")
    first.stop()
    assert not first.alive()
    second = devstack.start_redis(tmp_path, password="pw")
    try:
        with redis.Redis.from_url(second.url) as c:
            assert c.get("k") == b"v"
    finally:
        second.stop()
    assert (tmp_path / "appendonlydir").is_dir()


def test_ensure_openssl11_is_cached() -> None:
    first = devstack.ensure_libs()
    started = time.monotonic()
    assert devstack.ensure_libs() == first
    assert time.monotonic() - started < 2
    if first is not None:
        assert {"libssl.so.1.1", "libcrypto.so.1.1"} <= {p.name for p in first.iterdir()}
