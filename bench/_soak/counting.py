"""Counting stored trades against the deterministic simulator (``standins.market.MarketSim``).

One function, used by ``bench/end_to_end.py`` (one span per ticker) and ``bench/soak.py`` (rolling windows,
only the spans the WebSocket stand-in actually delivered must be complete).

For a ticker and a span of event time, the stored volume series must hold exactly the simulator's distinct
trade milliseconds, each with the summed size of that millisecond's trades: a dropped trade removes or lowers
a sample (``missing``), a trade written twice adds or raises one (``duplicates``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from headwater.keys import Keys
from standins.market import MINUTE_MS, MarketSim


@dataclass
class TradeCount:
    checked: int = 0  # trade milliseconds that had to be present
    missing: int = 0
    duplicates: int = 0
    unchecked_missing: int = 0  # absent milliseconds outside ``required`` (not delivered, or in flight at a kill)
    examples: list[int] = field(default_factory=list)  # a few lost or doubled milliseconds

    def add(self, other: TradeCount) -> None:
        self.checked += other.checked
        self.missing += other.missing
        self.duplicates += other.duplicates
        self.unchecked_missing += other.unchecked_missing
        self.examples += other.examples[: max(0, 10 - len(self.examples))]


def expected_trades(sim: MarketSim, ticker: str, start_ms: int, end_ms: int) -> dict[int, float]:
    """The simulator's summed trade size per millisecond in [start_ms, end_ms]."""
    expected: dict[int, float] = {}
    for minute in range((start_ms // MINUTE_MS) * MINUTE_MS, end_ms + 1, MINUTE_MS):
        for trade in sim.minute_trades(ticker, minute):
            if start_ms <= trade.t_ms <= end_ms:
                expected[trade.t_ms] = expected.get(trade.t_ms, 0.0) + trade.size
    return expected


def count_trades(
    client: redis.Redis, keys: Keys, sim: MarketSim, ticker: str, start_ms: int, end_ms: int,
    required: Sequence[tuple[int, int]] | None = None,
) -> TradeCount:  # fmt: skip
    """Compare ``ticker``'s stored volume samples in [start_ms, end_ms] with the simulator's trades.

    Every stored sample is checked (a sample the simulator does not have, or with more volume, is a duplicate);
    a simulator millisecond is required to be present only inside one of the ``required`` closed spans
    (default: the whole span).
    """
    out = TradeCount()
    if end_ms < start_ms:
        return out
    expected = expected_trades(sim, ticker, start_ms, end_ms)
    got = {int(ts): float(v) for ts, v in client.execute_command("TS.RANGE", keys.tick(ticker, "volume"), start_ms, end_ms)}
    spans = [(start_ms, end_ms)] if required is None else list(required)
    for ts, volume in expected.items():
        stored = got.get(ts, 0.0)
        if stored >= volume:
            continue
        if any(lo <= ts <= hi for lo, hi in spans):
            out.missing += 1
            out.examples.append(ts)
        else:
            out.unchecked_missing += 1
    out.checked = sum(1 for ts in expected if any(lo <= ts <= hi for lo, hi in spans))
    for ts, volume in got.items():
        if ts not in expected or volume > expected[ts]:
            out.duplicates += 1
            out.examples.append(ts)
    return out
