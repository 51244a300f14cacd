"""Long-run Polygon defects (issue 11) against the real WebSocket stand-in and Redis Stack.

* The reconnect budget counts consecutive failed reconnects: a streamer that is dropped more often than
  ``max_reconnects`` over its life, with healthy sessions in between, keeps going; a connection that never
  becomes healthy still gives up.
* ``max_connections`` (a second streamer on the same key) is a distinct, loud, fatal error: its own exception,
  an ERROR line with the reason, a counter in the streamer metrics and exit code 5 (auth failure is 3).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from headwater.keys import Keys
from headwater.providers.polygon import PolygonGaveUp, PolygonMaxConnections, PolygonStream
from standins.polygon_ws import PolygonStandIn
from streamer.app import Streamer
from test_streamer import TICKERS, Background, make_settings, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_more_drops_over_the_life_than_the_budget_do_not_stop_the_streamer(redis_url, key_prefix, r):
    keys = Keys(key_prefix)
    with PolygonStandIn(tickers=TICKERS, events_per_second=400) as ws:
        settings = make_settings(ws.url, "http://127.0.0.1:9", key_prefix, max_reconnects=2, channels=("T", "Q"))
        streamer = Streamer(settings, TICKERS, redis_url=redis_url)
        run = Background(streamer, duration_s=120)
        wait_for(lambda: ws.connections == 1 and streamer.streams and streamer.streams[0].stats.frames > 0, what="streaming")
        drops = 6  # three times the budget
        for n in range(1, drops + 1):
            frames = streamer.streams[0].stats.frames
            assert ws.drop_connections(code=1011) == 1
            wait_for(lambda n=n: run.error is not None or streamer.streams[0].stats.reconnects >= n, what=f"reconnect {n}")
            assert run.error is None, f"the streamer stopped after drop {n}: {run.error!r}"
            # > 20 frames: market data, not only the session's own status frames (connected, auth, subscribed)
            wait_for(lambda f=frames: streamer.streams[0].stats.frames > f + 20, what=f"data after reconnect {n}")
        assert run.thread.is_alive() and run.error is None
        entries_before = sum(r.xlen(s) for s in keys.raw_market_data_all(2))
        wait_for(lambda: sum(r.xlen(s) for s in keys.raw_market_data_all(2)) > entries_before, what="still writing")
        run.stop()
        run.join()
        assert streamer.totals()["reconnects"] >= drops


def test_a_connection_that_never_becomes_healthy_still_gives_up(redis_url, key_prefix, r):
    """Authenticated and subscribed, but dropped before any data and before ``healthy_after_s``: it counts."""
    with PolygonStandIn(tickers=TICKERS, events_per_second=100) as ws:
        ws.pause(60)  # no market data at all
        frames: list[bytes] = []

        async def on_frame(frame: bytes, _ms: int) -> None:
            frames.append(frame)

        stream = PolygonStream(ws.url, SecretStr("demo-key"), ["T.AAPL"], on_frame, max_reconnects=3,
                               backoff_base_s=0.05, backoff_max_s=0.1, healthy_after_s=30)  # fmt: skip
        stop = threading.Event()

        def keep_dropping() -> None:
            while not stop.is_set():
                ws.drop_connections(code=1011)
                time.sleep(0.05)

        dropper = threading.Thread(target=keep_dropping, daemon=True)
        dropper.start()
        try:
            import asyncio

            with pytest.raises(PolygonGaveUp, match="3 failed reconnects in a row"):
                asyncio.run(asyncio.wait_for(stream.run(), timeout=30))
        finally:
            stop.set()
            dropper.join()
        assert 1 <= stream.stats.connects <= 4  # subscribed at least once; a drop may also hit a handshake
        assert all(e["ev"] == "status" for f in frames for e in orjson.loads(f))  # no market data ever arrived


def test_a_quiet_connection_that_stays_up_counts_as_healthy():
    """No market data (a quiet feed after hours), but each session lasts longer than ``healthy_after_s``."""
    import asyncio

    with PolygonStandIn(tickers=TICKERS, events_per_second=100) as ws:
        ws.pause(120)

        async def scenario() -> PolygonStream:
            stream = PolygonStream(ws.url, SecretStr("demo-key"), ["T.AAPL"], _ignore, max_reconnects=1,
                                   backoff_base_s=0.05, backoff_max_s=0.1, healthy_after_s=0.3)  # fmt: skip
            task = asyncio.create_task(stream.run())
            for n in range(4):  # four drops with a budget of one
                while stream.stats.connects <= n:
                    assert not task.done(), task
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(ws.drop_connections, 1011)
            while stream.stats.connects < 5:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.02)
            await stream.stop()
            await task
            return stream

        stream = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert stream.stats.reconnects == 4


def _stream_cli(ws_url: str, redis_url: str, prefix: str, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ, "REDIS_URL": redis_url, "HEADWATER_REDIS_KEY_PREFIX": prefix, "HEADWATER_POLYGON_WS_URL": ws_url,
        "HEADWATER_POLYGON_API_KEY": "demo-key", "HEADWATER_POLYGON_BASE_URL": "http://127.0.0.1:9",
        "HEADWATER_POLYGON_CHANNELS": '["T","Q"]', "HEADWATER_POLYGON_RECONNECT_BASE_S": "0.1",
        "HEADWATER_POLYGON_RECONNECT_MAX_S": "0.2", "HEADWATER_LOG_JSON": "1",
    }  # fmt: skip
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "streamer", "stream", "--tickers-file", str(log_path.with_suffix(".tickers")),
             "--duration", "60"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.mark.parametrize("policy", ["evict_oldest", "reject_new"])
def test_max_connections_is_a_loud_distinct_exit_never_a_fight(redis_url, key_prefix, r, tmp_path, policy):
    """A second streamer on the same key (here another deployment, e.g. staging on production's key): the one the
    server refuses exits 5, says why at ERROR, counts it in its metrics; the other keeps streaming."""
    keys = Keys(key_prefix)
    other = Keys(key_prefix + "b:")
    with PolygonStandIn(tickers=TICKERS, events_per_second=300, max_connections_per_key=1,
                        max_connections_policy=policy) as ws:  # fmt: skip
        (tmp_path / "first.tickers").write_text("\n".join(TICKERS) + "\n")
        (tmp_path / "second.tickers").write_text("\n".join(TICKERS) + "\n")
        first = _stream_cli(ws.url, redis_url, key_prefix, tmp_path / "first.log")
        try:
            wait_for(lambda: ws.connections == 1 and r.exists(keys.streamer_metrics(0)), timeout=60, what="first streamer")
            second = _stream_cli(ws.url, redis_url, other.prefix, tmp_path / "second.log")
            loser, loser_log = (first, "first") if policy == "evict_oldest" else (second, "second")
            loser_keys = keys if loser is first else other
            winner = second if loser is first else first
            assert loser.wait(timeout=60) == 5
            time.sleep(1.0)
            assert winner.poll() is None, "the other streamer must keep its connection, not fight for it"
            assert ws.connections == 1
        finally:
            for proc in (first, locals().get("second")):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)
    lines = [orjson.loads(line) for line in (tmp_path / f"{loser_log}.log").read_bytes().splitlines() if line.startswith(b"{")]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert any("max_connections" in e["message"] and "Maximum number of websocket connections" in e["message"] for e in errors), errors
    assert not any("reconnect" in line["message"] for line in lines if line["level"] == "WARNING")
    metrics = orjson.loads(r.get(loser_keys.streamer_metrics(0)))
    assert metrics["ws_max_connections"] == 1 and metrics["ws_reconnects"] == 0


def test_max_connections_raises_its_own_exception(redis_url, key_prefix, r, caplog):
    with PolygonStandIn(tickers=TICKERS, events_per_second=300, max_connections_per_key=1,
                        max_connections_policy="evict_oldest") as ws:  # fmt: skip
        settings = make_settings(ws.url, "http://127.0.0.1:9", key_prefix, channels=("T",))
        streamer = Streamer(settings, TICKERS, redis_url=redis_url)
        run = Background(streamer, duration_s=60)
        wait_for(lambda: ws.connections == 1 and streamer.streams and streamer.streams[0].stats.frames > 0, what="streaming")
        intruder = PolygonStream(ws.url, SecretStr("demo-key"), ["T.AAPL"], _ignore, max_reconnects=0)
        import asyncio

        async def intrude() -> None:
            task = asyncio.create_task(intruder.run())
            while intruder.stats.connects == 0 and not task.done():
                await asyncio.sleep(0.05)
            await asyncio.to_thread(run.thread.join, 30)  # the evicted streamer stops on its own
            await intruder.stop()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout=30)

        with caplog.at_level(logging.ERROR, logger="headwater.providers.polygon"):
            asyncio.run(intrude())
            with pytest.raises(PolygonMaxConnections, match="max_connections"):
                run.join()
        assert streamer.streams[0].stats.max_connections == 1
        assert streamer.streams[0].stats.reconnects == 0  # never reconnected to fight for the slot
        assert any("max_connections" in rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR)


async def _ignore(_frame: bytes, _ms: int) -> None:
    return None
