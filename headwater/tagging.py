"""Ticker tagging: which tickers of the universe a text is about.

Rules, in this order (a ticker is reported once, in order of first appearance):

1. **Cashtags** -- ``$AAPL``, ``$brk.b`` (any case) -- for tickers in the universe.
2. **Exchange references** -- ``(NASDAQ: AAPL)``, ``NYSE:T``.
3. **Bare tickers** -- an upper-case word equal to a universe ticker (``AAPL``, ``BRK.B``), except the
   *ambiguous* ones: one- and two-letter symbols and symbols that are English words (``NOW``, ``LOW``, ``ALL``,
   ``T``, ``V``, ``C`` ...), which count only as cashtags or exchange references.
4. **Company names** -- case-sensitive whole-word match of the names the press uses (``Apple``, ``Johnson &
   Johnson``, ``Coca-Cola``; possessive ``Apple's`` included). ``COMPANY_NAMES`` covers the default universe
   (``config/tickers.txt``) and the stand-ins' companies; pass ``names=`` for others, or derive them from the
   SEC's ``company_tickers.json`` with ``names_from_sec``.

Deliberately simple: no entity disambiguation ("Apple" the fruit counts), no fuzzy matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

COMPANY_NAMES: dict[str, tuple[str, ...]] = {
    "AAPL": ("Apple",), "MSFT": ("Microsoft",), "NVDA": ("Nvidia", "NVIDIA"), "AMZN": ("Amazon",),
    "GOOGL": ("Alphabet", "Google"), "META": ("Meta Platforms", "Meta", "Facebook"),
    "BRK.B": ("Berkshire Hathaway", "Berkshire"), "TSLA": ("Tesla",), "AVGO": ("Broadcom",),
    "LLY": ("Eli Lilly", "Lilly"), "JPM": ("JPMorgan", "JPMorgan Chase", "JP Morgan"), "V": ("Visa",),
    "UNH": ("UnitedHealth",), "XOM": ("Exxon Mobil", "ExxonMobil", "Exxon"), "MA": ("Mastercard",),
    "JNJ": ("Johnson & Johnson",), "PG": ("Procter & Gamble",), "HD": ("Home Depot",), "COST": ("Costco",),
    "MRK": ("Merck",), "ABBV": ("AbbVie",), "CVX": ("Chevron",), "CRM": ("Salesforce",),
    "BAC": ("Bank of America",), "KO": ("Coca-Cola",), "PEP": ("PepsiCo", "Pepsi"), "NFLX": ("Netflix",),
    "AMD": ("Advanced Micro Devices",), "WMT": ("Walmart",), "TMO": ("Thermo Fisher",), "ADBE": ("Adobe",),
    "LIN": ("Linde",), "MCD": ("McDonald's",), "ACN": ("Accenture",), "CSCO": ("Cisco",), "ABT": ("Abbott",),
    "ORCL": ("Oracle",), "DIS": ("Disney", "Walt Disney"), "WFC": ("Wells Fargo",), "INTU": ("Intuit",),
    "TXN": ("Texas Instruments",), "DHR": ("Danaher",), "VZ": ("Verizon",), "PM": ("Philip Morris",),
    "QCOM": ("Qualcomm",), "CAT": ("Caterpillar",), "IBM": ("International Business Machines",),
    "AMGN": ("Amgen",), "NEE": ("NextEra",), "CMCSA": ("Comcast",), "GE": ("General Electric", "GE Aerospace"),
    "PFE": ("Pfizer",), "UNP": ("Union Pacific",), "SPGI": ("S&P Global",), "LOW": ("Lowe's",),
    "HON": ("Honeywell",), "INTC": ("Intel",), "AMAT": ("Applied Materials",), "NOW": ("ServiceNow",),
    "RTX": ("Raytheon",), "UBER": ("Uber",), "ISRG": ("Intuitive Surgical",), "T": ("AT&T",),
    "GS": ("Goldman Sachs",), "BKNG": ("Booking Holdings",), "PLD": ("Prologis",), "SYK": ("Stryker",),
    "ELV": ("Elevance",), "MS": ("Morgan Stanley",), "BLK": ("BlackRock",), "MDT": ("Medtronic",),
    "LMT": ("Lockheed Martin", "Lockheed"), "SBUX": ("Starbucks",), "TJX": ("TJX Companies",),
    "DE": ("Deere", "John Deere"), "GILD": ("Gilead",), "ADP": ("Automatic Data Processing",),
    "VRTX": ("Vertex Pharmaceuticals",), "MDLZ": ("Mondelez",), "C": ("Citigroup", "Citi"),
    "REGN": ("Regeneron",), "MMC": ("Marsh McLennan",), "CB": ("Chubb",), "ADI": ("Analog Devices",),
    "SCHW": ("Charles Schwab", "Schwab"), "LRCX": ("Lam Research",), "BMY": ("Bristol-Myers Squibb", "Bristol Myers"),
    "AMT": ("American Tower",), "CI": ("Cigna",), "MU": ("Micron",), "PGR": ("Progressive Corp",),
    "SO": ("Southern Company",), "ZTS": ("Zoetis",), "BSX": ("Boston Scientific",), "ETN": ("Eaton",),
    "FI": ("Fiserv",), "SLB": ("Schlumberger",), "DUK": ("Duke Energy",), "PANW": ("Palo Alto Networks",),
    "SPY": ("SPDR S&P 500 ETF",), "QQQ": ("Invesco QQQ",),
}  # fmt: skip

# Symbols that are English words or too short to trust as bare upper-case words.
ENGLISH_WORDS = frozenset({
    "ALL", "ARE", "CAT", "NOW", "LOW", "LIN", "KO", "ON", "IT", "SO", "DE", "MA", "PM", "CB", "CI", "FI", "MS",
    "GE", "HD", "PG", "MU", "BE", "GO", "AN", "AM", "AS", "AT", "BY", "DO", "IF", "IN", "IS", "ME", "NO", "OR",
    "UP", "US", "WE", "ONE", "KEY", "CASH", "BIG", "FUN", "LOVE", "REAL", "SAFE", "TRUE", "WELL", "CEO", "CFO",
    "IPO", "USA", "EPS", "ETF", "AI", "EV", "DD", "YOLO", "COST",
})  # fmt: skip

_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:[.\-][A-Za-z])?)(?![\w])")
_EXCHANGE = re.compile(r"\b(?:NASDAQ|NYSE|Nasdaq|NYSE American|AMEX|Cboe)\s*:\s*([A-Z][A-Z0-9]{0,5}(?:[.\-][A-Z])?)\b")
_BARE = re.compile(r"(?<![\w$.\-])([A-Z][A-Z0-9]{0,5}(?:[.\-][A-Z])?)(?![\w\-]|\.[A-Za-z])")
_SUFFIXES = re.compile(
    r"[,.]?\s+(?:inc|incorporated|corp|corporation|co|company|ltd|plc|holdings?|group|n\.?v|s\.?a|lp|llc|"
    r"/[a-z]{2}/?|class [a-c])\.?$", re.IGNORECASE
)  # fmt: skip


def is_ambiguous(ticker: str) -> bool:
    """Whether a bare upper-case ``ticker`` in text is too likely to be a word or an abbreviation."""
    return len(ticker) <= 2 or ticker in ENGLISH_WORDS


def names_from_sec(company_tickers: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Press-style names from SEC ``company_tickers.json`` (``{"0": {"ticker", "title", "cik_str"}}``).

    ``"APPLE INC."`` -> ``"Apple"``, ``"MICROSOFT CORP"`` -> ``"Microsoft"``: legal suffixes stripped, all-caps
    titles title-cased. Crude by design; prefer ``COMPANY_NAMES`` where a ticker is listed there.
    """
    names: dict[str, tuple[str, ...]] = {}
    for entry in company_tickers.values():
        title = str(entry.get("title") or "").strip()
        previous = None
        while title and previous != title:
            previous, title = title, _SUFFIXES.sub("", title).strip().rstrip(" &,")
        if title.isupper():
            title = title.title()
        if len(title) >= 3:
            names[str(entry.get("ticker") or "").upper()] = (title,)
    return names


class TickerTagger:
    """Tags texts with the tickers of ``universe`` they mention (see the module docstring for the rules)."""

    def __init__(self, universe: Iterable[str], names: Mapping[str, Iterable[str]] | None = None) -> None:
        self.universe = frozenset(t.upper() for t in universe)
        table = {**COMPANY_NAMES, **{k.upper(): tuple(v) for k, v in (names or {}).items()}}
        by_name: dict[str, str] = {}
        for ticker, aliases in table.items():
            if ticker in self.universe:
                for alias in aliases:
                    by_name.setdefault(alias, ticker)
        # Longest names first, so "Meta Platforms" wins over "Meta" and "JPMorgan Chase" over "JPMorgan".
        alternatives = sorted(by_name, key=len, reverse=True)
        self._names = by_name
        self._name_re = (
            re.compile(r"(?<![\w&])(" + "|".join(re.escape(a) for a in alternatives) + r")(?:'s)?(?![\w&])")
            if alternatives else None
        )  # fmt: skip

    def tag(self, *texts: str) -> tuple[str, ...]:
        """Tickers mentioned in ``texts``, in order of first appearance."""
        found: dict[str, None] = {}
        for text in texts:
            if not text:
                continue
            hits: list[tuple[int, str]] = []
            hits += [(m.start(), m.group(1).upper()) for m in _CASHTAG.finditer(text)]
            hits += [(m.start(), m.group(1)) for m in _EXCHANGE.finditer(text)]
            hits += [(m.start(), m.group(1)) for m in _BARE.finditer(text) if not is_ambiguous(m.group(1))]
            if self._name_re is not None:
                hits += [(m.start(), self._names[m.group(1)]) for m in self._name_re.finditer(text)]
            for _, ticker in sorted(hits):
                if ticker in self.universe:
                    found.setdefault(ticker, None)
        return tuple(found)
