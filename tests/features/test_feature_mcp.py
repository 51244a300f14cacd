"""The MCP server, driven by the official SDK's own client: over streamable HTTP with API keys (uvicorn on a
random loopback port) and over stdio (``python -m features.mcp`` as a subprocess), against real Redis."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest
import uvicorn
from feature_scenario import EXPECTED, T, HashEmbedder, write_scenario
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from features.access import AgentAccess
from features.agent_state import Portfolio
from features.auth import SCOPES, ApiKeyStore
from features.engineer import run_engineer, select_specs
from features.mcp import build_server
from headwater.documents.index import ChunkRecord, ensure_documents_index, write_document
from headwater.documents.search import DocumentSearch

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = T - 86_400_000  # the test filing's acceptance time; the pipeline stored it an hour later
TOOLS = {"list_features", "get_features", "get_bars", "latest_news", "latest_social_posts", "search_documents",
         "nearest_embeddings", "get_profile", "update_profile", "get_portfolio", "create_portfolio", "update_portfolio"}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def world(store, catalog, serving):
    """The feature scenario, alice's and bob's keys and portfolios."""
    write_scenario(store)
    run_engineer(store.r, store.keys, select_specs(catalog), ["AAA", "BRK.B", "CCC"], T)
    auth = ApiKeyStore(store.r, store.keys)
    keys = {owner: auth.issue(owner, SCOPES).token for owner in ("alice", "bob")}
    keys["reader"] = auth.issue("carol", ["features:read"]).token
    serving.state.create_portfolio(Portfolio(portfolio_id="p_alice", owner="alice", cash=1000))
    serving.state.create_portfolio(Portfolio(portfolio_id="p_bob", owner="bob", cash=5000))
    ensure_documents_index(store.r, store.keys)
    record = ChunkRecord("sec:AAA-mcp", 0, "AAA", "10-K", "sec", "Item 7", PUBLIC, None, "gross margin outlook improved",
                         "raw/sec/AAA-mcp.htm", "h1", stored_ms=PUBLIC + 3_600_000)  # fmt: skip
    write_document(store.r, store.keys, [record], {0: HashEmbedder().encode_one("gross margin outlook").tobytes()})
    return store, serving, auth, keys


@pytest.fixture
def mcp_url(world):
    """The streamable HTTP MCP app under uvicorn; yields its /mcp URL."""
    _, serving, auth, _ = world
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    store = world[0]
    documents = DocumentSearch(store.r, store.keys, HashEmbedder())
    app = build_server(AgentAccess(serving, documents), auth, base_url=base).streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "MCP server did not start"
        time.sleep(0.05)
    yield f"{base}/mcp"
    server.should_exit = True
    thread.join(timeout=10)


def _client(url: str, token: str | None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=60)))


def _data(result) -> object:
    """A tool result's structured content (the SDK wraps non-object results in {"result": ...})."""
    assert not result.is_error, result.content
    content = result.structured_content
    return content.get("result", content) if isinstance(content, dict) and set(content) == {"result"} else content


def test_session_lists_tools_reads_features_and_owns_only_its_portfolio(world, mcp_url):
    _, _, _, keys = world

    async def session() -> None:
        async with _client(mcp_url, keys["alice"]) as client:
            listed = await client.list_tools()
            assert TOOLS <= {t.name for t in listed.tools}
            assert all(t.description and len(t.description) > 30 for t in listed.tools if t.name in TOOLS)
            schema = next(t for t in listed.tools if t.name == "get_features").input_schema
            assert {"tickers", "features", "as_of", "time_basis"} <= set(schema["properties"])

            online = _data(await client.call_tool("get_features", {"tickers": ["AAA"], "features": ["last_price:v1", "vwap:v1"]}))
            assert online["rows"][0]["ticker"] == "AAA"
            assert online["rows"][0]["values"] == pytest.approx([101.0, EXPECTED["vwap"]])
            past = _data(await client.call_tool("get_features", {"tickers": ["AAA"], "features": ["last_price:v1"],
                                                                  "as_of": "2024-05-01T15:28:00Z"}))  # fmt: skip
            assert past["rows"][0]["values"] == [98.0] and past["time_basis"] == "knowledge"

            found = _data(await client.call_tool("search_documents", {"query": "gross margin outlook", "ticker": "AAA", "k": 10}))
            hit = next(h for h in found["hits"] if h["doc_id"] == "sec:AAA-mcp")
            assert hit["form"] == "10-K" and hit["blob_url"] == "raw/sec/AAA-mcp.htm" and "margin" in hit["text"]
            early = _data(await client.call_tool("search_documents", {"query": "gross margin outlook", "ticker": "AAA",
                                                                       "as_of": str(PUBLIC + 60_000), "k": 10}))  # fmt: skip
            assert "sec:AAA-mcp" not in {h["doc_id"] for h in early["hits"]}  # public, not yet stored by the pipeline

            catalog = _data(await client.call_tool("list_features", {"group": "market"}))
            assert {"last_price:v1", "vwap:v1"} <= {f["feature"] for f in catalog}

            own = _data(await client.call_tool("get_portfolio", {"portfolio_id": "p_alice"}))
            assert own["owner"] == "alice" and own["cash"] == 1000
            fill = _data(await client.call_tool("update_portfolio", {"portfolio_id": "p_alice", "action": "fill",
                                                                      "ticker": "AAA", "quantity": 2, "price": 100}))  # fmt: skip
            assert fill == {"quantity": 2.0}
            after = _data(await client.call_tool("get_portfolio", {"portfolio_id": "p_alice"}))
            assert after["cash"] == 800 and after["positions"]["AAA"]["quantity"] == 2

            refused = await client.call_tool("update_portfolio", {"portfolio_id": "p_bob", "action": "cash", "amount": -5000})
            assert refused.is_error and "forbidden" in refused.content[0].text and "p_bob" in refused.content[0].text
            peek = await client.call_tool("get_portfolio", {"portfolio_id": "p_bob"})
            assert peek.is_error and "forbidden" in peek.content[0].text

            bad = await client.call_tool("get_bars", {"ticker": "AAA", "timeframe": "7m"})
            assert bad.is_error
            hostile = await client.call_tool("get_portfolio", {"portfolio_id": "$..*"})
            assert hostile.is_error and "bad_request" in hostile.content[0].text

    asyncio.run(session())
    assert world[1].state.get_portfolio("p_bob").cash == 5000  # bob's cash untouched


def test_scopes_and_missing_keys_are_refused(world, mcp_url):
    _, _, _, keys = world

    async def reader() -> None:
        async with _client(mcp_url, keys["reader"]) as client:
            result = await client.call_tool("update_portfolio", {"portfolio_id": "p_alice", "action": "cash", "amount": 1})
            assert result.is_error and "state:write" in result.content[0].text
            assert not (await client.call_tool("list_features", {})).is_error

    asyncio.run(reader())
    resp = httpx2.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                       headers={"Accept": "application/json, text/event-stream"})  # fmt: skip
    assert resp.status_code == 401
    resp = httpx2.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                       headers={"Authorization": "Bearer hw_000000000000_" + "x" * 43,
                                "Accept": "application/json, text/event-stream"})  # fmt: skip
    assert resp.status_code == 401


def test_news_are_invisible_before_the_pipeline_learned_them(world, mcp_url):
    """Published at t, ingested at t + 5 min: not there at as_of t + 1 min (knowledge), there by event time."""
    store, _, _, keys = world
    t = T - 3_600_000
    store.r.hset(store.keys.article("late1"), mapping={"title": "Late wire story", "source": "wire", "url": "https://x/1",
                                                       "published_ms": t, "stored_ms": t + 300_000, "sentiment": 0.5})  # fmt: skip
    store.r.zadd(store.keys.news_index("AAA"), {"late1": t})

    async def session() -> None:
        async with _client(mcp_url, keys["alice"]) as client:
            at = t + 60_000
            known = _data(await client.call_tool("latest_news", {"ticker": "AAA", "as_of": str(at)}))
            assert "late1" not in {a["id"] for a in known}
            happened = _data(await client.call_tool("latest_news", {"ticker": "AAA", "as_of": str(at), "time_basis": "event"}))
            assert "late1" in {a["id"] for a in happened}
            later = _data(await client.call_tool("latest_news", {"ticker": "AAA", "as_of": str(t + 600_000)}))
            assert [a for a in later if a["id"] == "late1"][0]["stored_ms"] == t + 300_000

    asyncio.run(session())


@pytest.mark.slow
def test_stdio_transport(world, redis_url):
    """``python -m features.mcp`` over stdio with HEADWATER_API_KEY, as an agent host launches it."""
    store, _, _, keys = world
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEADWATER_", "REDIS_URL"))}
    env.update({"HEADWATER_REDIS_URL": redis_url, "HEADWATER_REDIS_KEY_PREFIX": store.keys.prefix,
                "HEADWATER_API_KEY": keys["alice"], "PYTHONPATH": str(ROOT), "HEADWATER_LOG_LEVEL": "WARNING"})  # fmt: skip
    params = StdioServerParameters(command=sys.executable, args=["-m", "features.mcp"], env=env, cwd=str(ROOT))

    async def session() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            assert TOOLS <= {t.name for t in (await client.list_tools()).tools}
            own = _data(await client.call_tool("get_portfolio", {"portfolio_id": "p_alice"}))
            assert own["owner"] == "alice"
            assert (await client.call_tool("get_portfolio", {"portfolio_id": "p_bob"})).is_error

    asyncio.run(session())
    bad = subprocess.run([sys.executable, "-m", "features.mcp"], env=env | {"HEADWATER_API_KEY": "nope"}, cwd=ROOT,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert bad.returncode == 2 and "malformed API key" in bad.stderr
