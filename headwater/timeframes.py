"""Time constants both sides share: milliseconds per unit, the bar timeframes, the US market's time zone.

One copy of each: ``DAY_MS`` for day boundaries (retention cut-offs, trade high-water marks), ``TIMEFRAMES``
for the bar series Redis compacts (``ts:{T}:bar:{TF}:...``), ``NEW_YORK`` for session dates.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_S = 86_400
DAY_MS = DAY_S * 1000

#: Bar timeframe -> bucket length (ms) of the server-side compactions, shortest first.
TIMEFRAMES: dict[str, int] = {"1m": MINUTE_MS, "5m": 5 * MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}

#: The US market's zone: its IANA name (pandas' ``tz_convert`` takes the fast path with the name, a
#: ``ZoneInfo`` is ~7x slower there) and the ``ZoneInfo`` for ``datetime``.
NEW_YORK_TZ = "America/New_York"
NEW_YORK = ZoneInfo(NEW_YORK_TZ)
