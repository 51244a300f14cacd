"""Settings: modes, base URLs, aliases, secrets handling."""

import pytest
from pydantic import ValidationError

from headwater.settings import (
    AlphaVantageSettings, EdgarSettings, PolygonSettings, ProviderMode, RedisSettings, Settings, StandInSettings,
)

STANDINS = StandInSettings(http_url="http://127.0.0.1:9000", ws_url="ws://127.0.0.1:9001/stocks", discover=False)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ["POLYGON_API_KEY", "MASSIVE_API_KEY", "HEADWATER_POLYGON_API_KEY", "ALPHAVANTAGE_API_KEY",
                 "HEADWATER_POLYGON_MODE", "REDIS_URL", "HEADWATER_REDIS_URL", "HEADWATER_EDGAR_USER_AGENT"]:
        monkeypatch.delenv(name, raising=False)


def test_no_key_means_simulated_against_the_standins():
    s = PolygonSettings()
    assert s.effective_mode is ProviderMode.SIMULATED
    assert s.resolved_base_url(STANDINS) == "http://127.0.0.1:9000/polygon"
    assert s.resolved_ws_url(STANDINS) == "ws://127.0.0.1:9001/stocks"
    assert s.resolved_key(STANDINS).get_secret_value() == "demo-key"
    assert AlphaVantageSettings().resolved_base_url(STANDINS) == "http://127.0.0.1:9000/alphavantage"


def test_a_key_switches_to_live_and_only_the_url_changes(monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", "pk_live_123")
    s = PolygonSettings()
    assert s.effective_mode is ProviderMode.LIVE
    assert s.resolved_base_url(STANDINS) == "https://api.polygon.io"
    assert s.resolved_ws_url(STANDINS) == "wss://socket.polygon.io/stocks"
    assert s.resolved_key().get_secret_value() == "pk_live_123"


def test_forced_mode_and_base_url_override(monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", "pk_live_123")
    monkeypatch.setenv("HEADWATER_POLYGON_MODE", "simulated")
    assert PolygonSettings().resolved_base_url(STANDINS) == "http://127.0.0.1:9000/polygon"
    assert PolygonSettings(base_url="http://proxy:1/").resolved_base_url(STANDINS) == "http://proxy:1"


def test_simulated_without_standins_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path))  # no embedded stand-ins recorded there
    with pytest.raises(RuntimeError, match="python -m devstack up"):
        PolygonSettings().resolved_base_url(StandInSettings(http_url=None))


def test_secrets_never_show_in_repr(monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", "pk_live_123")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@10.0.0.1:6379/0")
    s = Settings()
    assert "pk_live_123" not in repr(s) and "hunter2" not in repr(s)
    assert s.redis.url.get_secret_value().endswith("6379/0")


@pytest.mark.parametrize("placeholder", ["changeme", "your-api-key", "CHANGETHIS"])
def test_placeholder_secrets_are_refused(monkeypatch, placeholder):
    monkeypatch.setenv("POLYGON_API_KEY", placeholder)
    with pytest.raises(ValidationError, match="placeholder"):
        PolygonSettings()


def test_edgar_is_live_only_when_asked(monkeypatch):
    monkeypatch.setenv("HEADWATER_EDGAR_USER_AGENT", "Headwater ops@example.com")
    assert EdgarSettings().effective_mode is ProviderMode.SIMULATED
    monkeypatch.setenv("HEADWATER_EDGAR_MODE", "live")
    assert EdgarSettings().effective_mode is ProviderMode.LIVE


def test_key_prefix_must_not_contain_hash_tags():
    with pytest.raises(ValidationError):
        RedisSettings(key_prefix="{x}")
