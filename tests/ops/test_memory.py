"""python -m headwater.memory groups Redis memory by the key schema's families and names the biggest keys."""

from __future__ import annotations

import orjson
import pytest
import redis

from headwater import memory
from headwater.keys import Keys


def seed(r: redis.Redis, k: Keys) -> None:
    for field in ("price", "volume"):
        r.execute_command("TS.CREATE", k.tick("AAPL", field))
    for f in ("open", "close"):
        r.execute_command("TS.CREATE", k.bar("AAPL", "1m", f))
    r.execute_command("TS.CREATE", k.provider_bar("AAPL", "alphavantage", "1d", "close"))
    r.execute_command("TS.CREATE", k.sentiment("AAPL", "news"))
    r.hset(k.article("small"), mapping={"title": "t"})
    r.hset(k.article("big"), mapping={"title": "t", "content": "x" * 50_000})
    r.zadd(k.news_index("AAPL"), {"small": 1, "big": 2})
    r.hset(k.post("reddit:p1"), mapping={"text": "hi"})
    r.zadd(k.social_index("AAPL"), {"reddit:p1": 1})
    r.hset(k.chunk("sec:0000320193-24-000123", 0), mapping={"text": "chunk", "embedding": b"\0" * 1536})
    r.xadd(k.raw_market_data(0), {"d": "[]"})
    r.xadd(k.dead_letter, {"reason": "bad"})
    r.set(k.quota("newsapi", "abc123", "day:20240101"), 5)
    r.set(k.worker_metrics("w-1"), "{}")
    r.zadd(k.workers_alive, {"w-1": 1})
    r.set(f"{k.prefix}mystery", "?")


def test_families_and_biggest_keys(r: redis.Redis, keys: Keys) -> None:
    seed(r, keys)
    data = memory.report(r, keys.prefix, top=3)
    fams = {f["family"]: f for f in data["families"]}
    assert {name: f["keys"] for name, f in fams.items()} == {
        "ts ticks": 2, "ts bars": 2, "ts agg": 1, "ts signals": 1, "news articles": 2, "news index": 1,
        "social posts": 1, "social index": 1, "doc chunks": 1, "streams": 2, "quota": 1, "metrics": 1,
        "coordination": 1, "other": 1,
    }  # fmt: skip
    assert data["keys"] == 18 and data["measured_exactly"]
    news = fams["news articles"]
    assert news["biggest"][0]["key"] == keys.article("big") and news["biggest"][0]["type"] == "hash"
    assert news["bytes"] > 50_000 and news["retention"].startswith("news: hot 30 d")
    assert fams["ts ticks"]["retention"].startswith("ticks: hot 7 d") and fams["quota"]["retention"] == ""
    assert data["families"][0]["family"] == "news articles"  # sorted by memory
    assert all(0 < f["share_of_used_memory"] < 1 for f in data["families"]) and data["used_memory"] > 0


def test_sampling_estimates_large_keyspaces(r: redis.Redis, keys: Keys) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        pipe.hset(keys.article(f"a{i}"), mapping={"title": "x" * 100})
    pipe.execute()
    exact = memory.report(r, keys.prefix)
    sampled = memory.report(r, keys.prefix, max_keys=100, sample=50, seed=7)
    e, s = exact["families"][0], sampled["families"][0]
    assert not sampled["measured_exactly"] and s["estimated"] and s["keys"] == e["keys"] == 300
    assert abs(s["bytes"] - e["bytes"]) / e["bytes"] < 0.1


def test_cli_json(r: redis.Redis, keys: Keys, ops_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    seed(r, keys)
    assert memory.main(["--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["prefix"] == keys.prefix and data["keys"] == 18
    assert memory.main([]) == 0
    text = capsys.readouterr().out
    assert "news articles" in text and keys.article("big") in text
