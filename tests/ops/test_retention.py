"""config/retention.yaml is the one place for retention; TTLs and RETENTIONs follow it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml

from flows.retention import main, reapply
from headwater import retention
from headwater.keys import Keys
from headwater.retention import KINDS, RETENTION_FILE, parse_policy
from headwater.timeframes import DAY_MS, DAY_S

ROOT = Path(__file__).resolve().parents[2]


def test_every_data_kind_has_a_hot_retention_and_a_ttl() -> None:
    policy = retention.load_policy()
    assert set(KINDS) <= set(policy.hot)
    expected_days = {"ticks": 7, "bars": 90, "news": 30, "social": 14, "documents": 90}
    for kind, days in expected_days.items():
        assert retention.hot_days(kind) == days
        assert 7 * DAY_S <= retention.ttl_seconds(kind) <= (90 + policy.grace_days) * DAY_S
        assert retention.retention_ms(kind) == retention.ttl_seconds(kind) * 1000
    # archived kinds expire only after the archive flow had its grace period; the others at once
    assert retention.ttl_seconds("news") == (30 + policy.grace_days) * DAY_S
    assert retention.ttl_seconds("ticks") == 7 * DAY_S
    assert policy.warm_days == 730 and policy.cold_min_retention_years >= 7


def test_cutoff_is_a_utc_day_boundary_of_the_hot_window() -> None:
    now = 1_710_000_000_000 + 12_345  # 2024-03-09T16:00:12.345Z
    cut = retention.cutoff_ms("news", now)
    assert cut % DAY_MS == 0
    assert now - 31 * DAY_MS < cut <= now - 30 * DAY_MS
    assert retention.cutoff_ms("bars", now, older_than_days=1) == now - now % DAY_MS - DAY_MS


def test_kind_of_follows_the_key_schema() -> None:
    k = Keys("p:")
    assert retention.kind_of(k.tick("AAPL", "price"), "p:") == "ticks"
    assert retention.kind_of(k.bar("AAPL", "1d", "close"), "p:") == "bars"
    assert retention.kind_of(k.provider_bar("AAPL", "alphavantage", "1m", "vwap"), "p:") == "bars"
    assert retention.kind_of(k.sentiment("AAPL", "news"), "p:") == "bars"
    assert retention.kind_of(k.article("ab12"), "p:") == "news"
    assert retention.kind_of(k.news_index("AAPL"), "p:") == "news"
    assert retention.kind_of(k.post("reddit:x1"), "p:") == "social"
    assert retention.kind_of(k.chunk("sec:0000320193-24-000123", 3), "p:") == "documents"
    assert retention.kind_of(k.raw_news, "p:") is None
    assert retention.kind_of(k.quota("newsapi", "abc", "gcra"), "p:") is None
    assert retention.kind_of("other:news:1", "p:") is None


def test_invalid_policies_are_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(RETENTION_FILE.read_text())
    broken = {**data, "hot": {**data["hot"], "kinds": {k: v for k, v in data["hot"]["kinds"].items() if k != "social"}}}
    with pytest.raises(ValueError, match="social"):
        parse_policy(broken)
    short = {**data, "cold": {**data["cold"], "min_retention_years": 5}}
    with pytest.raises(ValueError, match="at least 7"):
        parse_policy(short)
    path = tmp_path / "retention.yaml"
    changed = {**data, "hot": {**data["hot"], "kinds": {**data["hot"]["kinds"], "news": {"days": 10, "archived": True}}}}
    path.write_text(yaml.safe_dump(changed))
    assert retention.load_policy(path).kind("news").days == 10


def test_expire_and_reapply_fix_keys_that_lost_their_ttl(r: redis.Redis, key_prefix: str) -> None:
    k = Keys(key_prefix)
    pipe = r.pipeline(transaction=True)
    pipe.hset(k.article("a1"), mapping={"title": "x"})
    retention.expire(pipe, "news", k.article("a1"))
    pipe.execute()
    assert abs(r.ttl(k.article("a1")) - retention.ttl_seconds("news")) <= 2
    r.hset(k.post("reddit:p1"), mapping={"text": "no ttl"})  # a writer forgot
    r.hset(k.article("a2"), mapping={"title": "too long"})
    r.expire(k.article("a2"), retention.ttl_seconds("news") * 10)
    r.execute_command("TS.CREATE", k.bar("AAPL", "1d", "close"), "RETENTION", 0)
    r.hset(k.checkpoint("job", "x"), "a", "1")  # not a data kind: left alone
    dry = reapply(r, k, dry_run=True)
    assert dry["social"] == {"seen": 1, "fixed": 1} and r.ttl(k.post("reddit:p1")) == -1
    report = reapply(r, k)
    assert report["social"]["fixed"] == 1 and report["news"] == {"seen": 2, "fixed": 1} and report["bars"]["fixed"] == 1
    assert abs(r.ttl(k.post("reddit:p1")) - retention.ttl_seconds("social")) <= 2
    assert r.ttl(k.article("a2")) <= retention.ttl_seconds("news")
    assert r.execute_command("TS.INFO", k.bar("AAPL", "1d", "close"))[b"retentionTime"] == retention.retention_ms("bars")
    assert r.ttl(k.checkpoint("job", "x")) == -1
    assert reapply(r, k)["bars"]["fixed"] == 0


def test_cli_shows_the_policy_and_applies_it(r: redis.Redis, keys: Keys, ops_env: None,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    r.hset(keys.article("a1"), mapping={"title": "no ttl"})
    assert main(["--apply", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "news       hot 30 d" in out and "news       1 keys, 1 to fix" in out and r.ttl(keys.article("a1")) == -1
    assert main(["--apply"]) == 0
    assert "news       1 keys, 1 fixed" in capsys.readouterr().out
    assert abs(r.ttl(keys.article("a1")) - retention.ttl_seconds("news")) <= 2


def test_policy_and_connections_do_not_import_each_other() -> None:
    """The policy is a leaf of the core: importing it loads no Redis connection code (the old cycle)."""
    probe = ("import sys, headwater.retention; "
             "print(sorted(m for m in sys.modules if m in ('headwater.storage.redis', 'redis', 'flows.retention')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
