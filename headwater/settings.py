"""Settings, one pydantic-settings class per subsystem, read from the environment.

Every class has its own prefix (``HEADWATER_REDIS_``, ``HEADWATER_POLYGON_`` ...); the few names users
already know from other tools are accepted as aliases (``REDIS_URL``, ``AZURE_STORAGE_CONNECTION_STRING``,
``POLYGON_API_KEY`` ...). Every provider key is optional: with no key the provider runs in ``simulated``
mode against the local stand-ins, and the *only* difference between the modes is the base URL.

Where a value is not in the environment, it is read from ``$HEADWATER_HOME/services.env`` (mode 0600), which
``python -m devstack up`` writes with the embedded services' endpoints and ``down`` removes; a real environment
variable always wins. The core knows nothing else about the development stack.

Secrets are ``SecretStr``: they never show up in ``repr``, logs or Prefect parameters.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AliasChoices, Field, SecretStr, TypeAdapter, field_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "changethis", "your-api-key", "xxx", "secret", "todo"})


class ProviderMode(StrEnum):
    """``live`` talks to the real provider; ``simulated`` to the local stand-in (same client, other URL)."""

    LIVE = "live"
    SIMULATED = "simulated"


def _refuse_placeholder(value: SecretStr | None) -> SecretStr | None:
    if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
        raise ValueError("placeholder secret refused: set a real value or leave it unset")
    return value


def headwater_home() -> Path:
    """``$HEADWATER_HOME``, default ``<repo>/.headwater``: local state (the dev stack's data, GX project)."""
    return Path(os.environ.get("HEADWATER_HOME") or REPO_ROOT / ".headwater").expanduser().absolute()


def services_env_file() -> Path:
    """``$HEADWATER_HOME/services.env``: the embedded services' endpoints, written by ``python -m devstack up``."""
    return headwater_home() / "services.env"


START_THE_STACK = "run `python -m devstack up` (or `make services` / `make demo`)"


class ServiceUnavailableError(RuntimeError):
    """A service the core needs is not configured, cannot be reached, or lacks something it needs."""


class NotConfiguredError(ServiceUnavailableError):
    """Neither the environment nor ``services.env`` says where a service is."""

    def __init__(self, what: str, variables: tuple[str, ...]) -> None:
        super().__init__(
            f"no {what} configured: {' / '.join(variables)} unset and no {services_env_file()}. "
            f"To use the embedded development stack, {START_THE_STACK}; otherwise set {' or '.join(variables)}."
        )


class _ServicesEnv(DotEnvSettingsSource):
    """``services.env`` as a settings source (only the settings' own variables; the file may not exist)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls, env_file=services_env_file(), dotenv_filtering="only_existing")


class _Base(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then ``$HEADWATER_HOME/services.env`` (read at each instantiation)."""
        return init_settings, env_settings, _ServicesEnv(settings_cls), file_secret_settings


class StandInSettings(_Base):
    """Where the local provider stand-ins listen: the environment, else the ones ``python -m devstack up`` runs."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_STANDIN_")
    http_url: str | None = Field(None, description="Base URL of the HTTP provider stand-in, e.g. http://127.0.0.1:8765")
    ws_url: str | None = Field(None, description="URL of the Polygon WebSocket stand-in, e.g. ws://127.0.0.1:8766/stocks")
    api_key: SecretStr = Field(SecretStr("demo-key"), description="Key the stand-ins accept")
    discover: bool = Field(True, description="Read the embedded stand-ins' URLs from $HEADWATER_HOME/services.env")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """As every setting, but without ``services.env`` when ``discover`` is false (e.g. in a cluster)."""
        sources = super().settings_customise_sources(
            settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        )
        discover = {**env_settings(), **init_settings()}.get("discover", True)
        if TypeAdapter(bool).validate_python(discover):
            return sources
        return tuple(source for source in sources if not isinstance(source, _ServicesEnv))


class _ProviderSettings(_Base):
    """Common shape: an optional key, an explicit or derived mode, and a live base URL."""

    api_key: SecretStr | None = Field(None, description="Provider API key; unset = simulated mode")
    mode: ProviderMode | None = Field(None, description="Force live/simulated; default: live iff a key is set")
    base_url: str | None = Field(None, description="Override the base URL (a proxy or a stand-in)")
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0

    LIVE_BASE_URL: ClassVar[str] = ""  # class constant per provider
    STANDIN_PREFIX: ClassVar[str] = ""  # path prefix of this provider on the HTTP stand-in

    @field_validator("api_key", check_fields=False)
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value)

    @property
    def effective_mode(self) -> ProviderMode:
        if self.mode is not None:
            return self.mode
        return ProviderMode.LIVE if self.api_key is not None else ProviderMode.SIMULATED

    def resolved_base_url(self, standins: StandInSettings | None = None) -> str:
        """The base URL the client talks to: explicit override, live URL, or the stand-in's prefix."""
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.effective_mode is ProviderMode.LIVE:
            return self.LIVE_BASE_URL
        standins = standins or StandInSettings()
        if not standins.http_url:
            raise RuntimeError(
                f"{type(self).__name__}: simulated mode needs the provider stand-in; start it with "
                "`python -m devstack up` or set HEADWATER_STANDIN_HTTP_URL (or give an API key for live mode)"
            )
        return standins.http_url.rstrip("/") + self.STANDIN_PREFIX

    def resolved_key(self, standins: StandInSettings | None = None) -> SecretStr:
        """The key to send: the configured one, or the stand-in's demo key in simulated mode."""
        if self.api_key is not None:
            return self.api_key
        if self.effective_mode is ProviderMode.LIVE:
            raise RuntimeError(f"{type(self).__name__}: live mode needs an API key")
        return (standins or StandInSettings()).api_key


class PolygonSettings(_ProviderSettings):
    """Polygon.io / Massive: the stocks WebSocket and the REST aggregates used for gap fill."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_POLYGON_")
    LIVE_BASE_URL: ClassVar[str] = "https://api.polygon.io"
    STANDIN_PREFIX: ClassVar[str] = "/polygon"
    LIVE_WS_URL: ClassVar[str] = "wss://socket.polygon.io/stocks"

    api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HEADWATER_POLYGON_API_KEY", "POLYGON_API_KEY", "MASSIVE_API_KEY")
    )
    ws_url: str | None = Field(None, description="Override the WebSocket URL (default: live or stand-in)")
    channels: tuple[str, ...] = Field(("T", "Q", "AM"), description="Channels to subscribe: T trades, Q quotes, A/AM aggregates")
    wildcard: bool = Field(False, description="Subscribe T.* etc. instead of the ticker list")
    connections: Annotated[int, Field(ge=1, le=64)] = Field(1, description="WebSocket connections, each owning a slice of tickers")
    max_reconnects: Annotated[int, Field(ge=0, le=1000)] = Field(10, description="Consecutive failed reconnects before giving up loudly")
    reconnect_base_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0, le=600)] = 30.0

    def resolved_ws_url(self, standins: StandInSettings | None = None) -> str:
        if self.ws_url:
            return self.ws_url
        if self.effective_mode is ProviderMode.LIVE:
            return self.LIVE_WS_URL
        standins = standins or StandInSettings()
        if not standins.ws_url:
            raise RuntimeError(
                "Polygon simulated mode needs the WebSocket stand-in; start it with `python -m devstack up` "
                "or set HEADWATER_STANDIN_WS_URL (or POLYGON_API_KEY for live mode)"
            )
        return standins.ws_url


class AlphaVantageSettings(_ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="HEADWATER_ALPHAVANTAGE_")
    LIVE_BASE_URL: ClassVar[str] = "https://www.alphavantage.co"
    STANDIN_PREFIX: ClassVar[str] = "/alphavantage"
    api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HEADWATER_ALPHAVANTAGE_API_KEY", "ALPHAVANTAGE_API_KEY", "ALPHA_VANTAGE_API_KEY")
    )


class NewsApiSettings(_ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="HEADWATER_NEWSAPI_")
    LIVE_BASE_URL: ClassVar[str] = "https://newsapi.org"
    STANDIN_PREFIX: ClassVar[str] = "/newsapi"
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("HEADWATER_NEWSAPI_API_KEY", "NEWSAPI_API_KEY", "NEWS_API_KEY"))


class RedditSettings(_ProviderSettings):
    """Reddit OAuth client credentials (``api_key`` is the client id)."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_REDDIT_")
    LIVE_BASE_URL: ClassVar[str] = "https://oauth.reddit.com"
    STANDIN_PREFIX: ClassVar[str] = "/reddit"
    LIVE_AUTH_URL: ClassVar[str] = "https://www.reddit.com"
    client_secret: SecretStr | None = None
    user_agent: str = Field("headwater/0.1 (market data pipeline)", description="Reddit requires a descriptive User-Agent")
    subreddits: tuple[str, ...] = ("stocks", "investing", "wallstreetbets")

    @field_validator("client_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value)


class XSettings(_ProviderSettings):
    """X (Twitter) API v2 with an app bearer token (``api_key``)."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_X_")
    LIVE_BASE_URL: ClassVar[str] = "https://api.x.com"
    STANDIN_PREFIX: ClassVar[str] = "/x"
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("HEADWATER_X_API_KEY", "X_BEARER_TOKEN", "TWITTER_BEARER_TOKEN"))


class EdgarSettings(_ProviderSettings):
    """SEC EDGAR needs no key but a User-Agent naming the requester with a contact e-mail."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_EDGAR_")
    LIVE_BASE_URL: ClassVar[str] = "https://www.sec.gov"
    LIVE_DATA_URL: ClassVar[str] = "https://data.sec.gov"
    STANDIN_PREFIX: ClassVar[str] = "/sec"
    STANDIN_DATA_PREFIX: ClassVar[str] = "/sec-data"
    user_agent: str | None = Field(None, description="e.g. 'Headwater Research ops@example.com' (required)")
    max_requests_per_s: Annotated[float, Field(gt=0, le=10)] = 8.0
    block_cooloff_s: Annotated[float, Field(ge=0, le=3600)] = 600.0

    @property
    def effective_mode(self) -> ProviderMode:
        """EDGAR needs no key, so live must be asked for (``HEADWATER_EDGAR_MODE=live``)."""
        return self.mode or ProviderMode.SIMULATED


class TranscriptSettings(_ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="HEADWATER_TRANSCRIPTS_")
    LIVE_BASE_URL: ClassVar[str] = ""
    STANDIN_PREFIX: ClassVar[str] = "/transcripts"
    url_template: str = Field("{base}/{ticker}/{year}/q{quarter}", description="Transcript page URL template")
    max_bytes: Annotated[int, Field(gt=0)] = 5_000_000


class RedisSettings(_Base):
    """The hot store: ``REDIS_URL`` / ``HEADWATER_REDIS_URL``, else the embedded Redis Stack's URL in services.env."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_REDIS_")
    url: SecretStr | None = Field(None, validation_alias=AliasChoices("HEADWATER_REDIS_URL", "REDIS_URL"))
    key_prefix: str = Field("", description="Namespace prepended to every key (tests, shared instances)")
    socket_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0

    @field_validator("key_prefix")
    @classmethod
    def _no_braces(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("key_prefix must not contain '{' or '}' (they are Redis Cluster hash tags)")
        return value


class BlobSettings(_Base):
    """Warm/cold storage: ``AZURE_STORAGE_CONNECTION_STRING`` / ``HEADWATER_BLOB_...``, else Azurite's in services.env."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_BLOB_")
    connection_string: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HEADWATER_BLOB_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING")
    )
    raw_container: str = "raw"
    warm_container: str = "warm"
    cold_container: str = "cold"


class StreamSettings(_Base):
    """Redis Streams and the stream-processor workers."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_STREAM_")
    partitions: Annotated[int, Field(ge=1, le=1024)] = Field(
        4, description="Partitions of stream:raw_market_data; a ticker always maps to one partition (one writer per series)"
    )
    maxlen: Annotated[int, Field(ge=1000)] = Field(2_000_000, description="Approximate MAXLEN of each raw stream")
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    block_ms: Annotated[int, Field(ge=1, le=60_000)] = 1000
    claim_idle_ms: Annotated[int, Field(ge=100)] = Field(30_000, description="Reclaim pending entries idle this long")
    max_deliveries: Annotated[int, Field(ge=1, le=100)] = Field(5, description="Deliveries before a message is dead-lettered")
    lease_ms: Annotated[int, Field(ge=200, le=600_000)] = Field(
        10_000, description="Partition lease: a dead worker's partitions are taken over this long after its last renewal"
    )


class Settings(_Base):
    """All settings; each sub-object reads its own prefix."""

    redis: RedisSettings = Field(default_factory=RedisSettings)
    blob: BlobSettings = Field(default_factory=BlobSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    standins: StandInSettings = Field(default_factory=StandInSettings)
    polygon: PolygonSettings = Field(default_factory=PolygonSettings)
    alphavantage: AlphaVantageSettings = Field(default_factory=AlphaVantageSettings)
    newsapi: NewsApiSettings = Field(default_factory=NewsApiSettings)
    reddit: RedditSettings = Field(default_factory=RedditSettings)
    x: XSettings = Field(default_factory=XSettings)
    edgar: EdgarSettings = Field(default_factory=EdgarSettings)
    transcripts: TranscriptSettings = Field(default_factory=TranscriptSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests build ``Settings()`` themselves)."""
    return Settings()
