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


def test_settings_read_services_env_and_the_environment_wins(monkeypatch, tmp_path):
    """What `python -m devstack up` writes to $HEADWATER_HOME/services.env is read; a real variable overrides it."""
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path))
    for name in ["HEADWATER_BLOB_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING", "HEADWATER_STANDIN_HTTP_URL",
                 "HEADWATER_STANDIN_WS_URL", "HEADWATER_STANDIN_DISCOVER"]:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "services.env").write_text(
        "# written by devstack\n"
        "HEADWATER_REDIS_URL='redis://:p%40ss@127.0.0.1:7001/0'\n"
        "HEADWATER_BLOB_CONNECTION_STRING='AccountName=devstoreaccount1;AccountKey=k+/==;BlobEndpoint=http://127.0.0.1:7002/a;'\n"
        "HEADWATER_STANDIN_HTTP_URL=http://127.0.0.1:7003\n"
        "HEADWATER_STANDIN_WS_URL=ws://127.0.0.1:7004/stocks\n"
        "PREFECT_API_URL=http://127.0.0.1:7005/api\n"
    )
    s = Settings()
    assert s.redis.url.get_secret_value() == "redis://:p%40ss@127.0.0.1:7001/0"
    assert s.blob.connection_string.get_secret_value().endswith("AccountKey=k+/==;BlobEndpoint=http://127.0.0.1:7002/a;")
    assert s.standins.http_url == "http://127.0.0.1:7003" and s.standins.ws_url == "ws://127.0.0.1:7004/stocks"
    assert PolygonSettings().resolved_ws_url() == "ws://127.0.0.1:7004/stocks"

    monkeypatch.setenv("REDIS_URL", "redis://10.0.0.9:6379/0")  # the alias in the environment beats the file
    monkeypatch.setenv("HEADWATER_STANDIN_HTTP_URL", "http://10.0.0.9:1")
    s = Settings()
    assert s.redis.url.get_secret_value() == "redis://10.0.0.9:6379/0"
    assert s.standins.http_url == "http://10.0.0.9:1" and s.standins.ws_url == "ws://127.0.0.1:7004/stocks"

    monkeypatch.setenv("HEADWATER_STANDIN_DISCOVER", "false")  # a cluster: stand-ins only from the environment
    assert StandInSettings().ws_url is None and StandInSettings().http_url == "http://10.0.0.9:1"


def test_nothing_configured_says_what_to_do(monkeypatch, tmp_path):
    from headwater.settings import NotConfiguredError
    from headwater.storage.blob import resolve_connection_string
    from headwater.storage.redis import resolve_redis_url

    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path))  # no services.env there
    for name in ["HEADWATER_BLOB_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NotConfiguredError) as caught:
        resolve_redis_url()
    message = str(caught.value)
    assert "python -m devstack up" in message and "make services" in message and "REDIS_URL" in message
    assert str(tmp_path / "services.env") in message
    with pytest.raises(NotConfiguredError, match="python -m devstack up.*AZURE_STORAGE_CONNECTION_STRING"):
        resolve_connection_string()
