"""Validated data models for everything Headwater ingests.

Field names are provider-neutral; the real-time models also accept Polygon's wire names as aliases
(``p`` -> ``price``), so a WebSocket frame validates in one pydantic-core pass with no intermediate dicts.
Times are integers in epoch milliseconds (UTC) unless a name says otherwise.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from headwater.keys import TICKER_RE

Ticker = Annotated[str, Field(pattern=TICKER_RE.pattern)]
EpochMs = Annotated[int, Field(gt=0, lt=10**13 * 4)]  # > 0 and before the year ~3200: catches s/us/ns mix-ups
Sequence = Annotated[int, Field(ge=0, lt=2**63)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", str_strip_whitespace=True)


# -- real time -------------------------------------------------------------------------------------------
class _Wire(_Model):
    """Strict: a JSON feed that sends ``"190.5"`` or ``true`` where a number belongs is malformed."""

    model_config = ConfigDict(strict=True, str_strip_whitespace=False)


class Trade(_Wire):
    """A trade print (Polygon ``T`` event)."""

    kind: Literal["T"] = Field("T", validation_alias="ev")
    ticker: Ticker = Field(validation_alias=_alias("sym", "ticker"))
    price: Price = Field(validation_alias=_alias("p", "price"))
    size: NonNegative = Field(validation_alias=_alias("s", "size"))
    ts: EpochMs = Field(validation_alias=_alias("t", "ts"))
    exchange: int = Field(0, validation_alias=_alias("x", "exchange"))
    trade_id: str = Field("", validation_alias=_alias("i", "trade_id"))
    conditions: tuple[int, ...] = Field((), validation_alias=_alias("c", "conditions"))
    seq: Sequence = Field(0, validation_alias=_alias("q", "seq"))
    tape: int = Field(0, validation_alias=_alias("z", "tape"))


class Quote(_Wire):
    """A top-of-book quote (Polygon ``Q`` event). A zero price means no bid/ask on that side."""

    kind: Literal["Q"] = Field("Q", validation_alias="ev")
    ticker: Ticker = Field(validation_alias=_alias("sym", "ticker"))
    bid: NonNegative = Field(validation_alias=_alias("bp", "bid"))
    bid_size: NonNegative = Field(0, validation_alias=_alias("bs", "bid_size"))
    ask: NonNegative = Field(validation_alias=_alias("ap", "ask"))
    ask_size: NonNegative = Field(0, validation_alias=_alias("as", "ask_size"))
    bid_exchange: int = Field(0, validation_alias=_alias("bx", "bid_exchange"))
    ask_exchange: int = Field(0, validation_alias=_alias("ax", "ask_exchange"))
    ts: EpochMs = Field(validation_alias=_alias("t", "ts"))
    seq: Sequence = Field(0, validation_alias=_alias("q", "seq"))
    tape: int = Field(0, validation_alias=_alias("z", "tape"))


class Bar(_Wire):
    """An OHLCV bar from any source; Polygon ``A``/``AM`` events validate into it directly."""

    kind: Literal["A", "AM", "bar"] = Field("bar", validation_alias="ev")
    ticker: Ticker = Field(validation_alias=_alias("sym", "ticker"))
    start: EpochMs = Field(validation_alias=_alias("s", "start"))
    open: Price = Field(validation_alias=_alias("o", "open"))
    high: Price = Field(validation_alias=_alias("h", "high"))
    low: Price = Field(validation_alias=_alias("l", "low"))
    close: Price = Field(validation_alias=_alias("c", "close"))
    volume: NonNegative = Field(validation_alias=_alias("v", "volume"))
    vwap: NonNegative | None = Field(None, validation_alias=_alias("vw", "vwap"))
    timeframe: str = "1m"
    source: str = "polygon"

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> Bar:
        if self.high < max(self.open, self.close) or self.low > min(self.open, self.close) or self.low > self.high:
            raise ValueError(
                f"inconsistent OHLC: open={self.open} high={self.high} low={self.low} close={self.close}"
            )
        if self.kind == "A":
            object.__setattr__(self, "timeframe", "1s")
        return self


MarketEvent = Annotated[Union[Trade, Quote, Bar], Field(discriminator="kind")]
MARKET_EVENT = TypeAdapter(MarketEvent)
MARKET_EVENTS = TypeAdapter(list[MarketEvent])


# -- batch: news and social ------------------------------------------------------------------------------
def content_hash(*parts: str) -> str:
    """A stable short hash of text parts, for de-duplication and idempotent storage."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.strip().lower().encode())
        h.update(b"\x1f")
    return h.hexdigest()[:32]


class Article(_Model):
    """A news article (NewsAPI ``articles[]`` entry, normalised)."""

    url: Annotated[str, Field(min_length=8, pattern=r"^https?://")]
    title: Annotated[str, Field(min_length=1, max_length=1000)]
    description: str = ""
    content: str = ""
    source: str = ""
    author: str | None = None
    published_at: datetime
    tickers: tuple[Ticker, ...] = ()

    @field_validator("published_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("published_at must carry a timezone")
        return value

    @property
    def id(self) -> str:
        """Identity: the URL (the same article re-fetched has the same id)."""
        return content_hash(self.url)

    @property
    def text_hash(self) -> str:
        """Content identity: the same story syndicated under two URLs has the same hash."""
        return content_hash(self.title, self.description)


class Post(_Model):
    """A social post (Reddit submission or X tweet, normalised)."""

    platform: Literal["reddit", "x"]
    post_id: Annotated[str, Field(min_length=1)]
    text: Annotated[str, Field(min_length=1)]
    author: str | None = None
    created_at: datetime
    url: str = ""
    score: int = 0
    comments: int = 0
    tickers: tuple[Ticker, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.platform}:{self.post_id}"


# -- documents -------------------------------------------------------------------------------------------
class Filing(_Model):
    """An SEC filing; ``accepted_at`` (EDGAR acceptanceDateTime) is when the market could know it."""

    ticker: Ticker
    cik: Annotated[int, Field(gt=0)]
    accession: Annotated[str, Field(pattern=r"^\d{10}-\d{2}-\d{6}$")]
    form: Annotated[str, Field(pattern=r"^(10-K|10-Q)(/A)?$")]
    filed_on: str
    report_date: str | None = None
    accepted_at: datetime
    primary_document: str

    @property
    def doc_id(self) -> str:
        return f"sec:{self.accession}"


class TranscriptTurn(_Model):
    speaker: str
    role: str = ""
    section: Literal["prepared_remarks", "qa"]
    text: str


class Transcript(_Model):
    """An earnings-call transcript with speaker turns split into prepared remarks and Q&A."""

    ticker: Ticker
    year: Annotated[int, Field(ge=1990, le=2100)]
    quarter: Annotated[int, Field(ge=1, le=4)]
    call_at: datetime
    url: str
    turns: tuple[TranscriptTurn, ...]

    @property
    def doc_id(self) -> str:
        return f"transcript:{self.ticker}:{self.year}Q{self.quarter}"
