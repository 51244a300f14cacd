"""Sentiment features from RedisTimeSeries: mean news/social sentiment over a window and mention velocity.

Inputs are the per-ticker series the news and social processors write (``ts:{T}:sentiment:news``,
``ts:{T}:sentiment:social``: scores in [-1, 1] at publish/creation time; ``ts:{T}:mentions:social``: mention
counts at post time). A window ``w`` at time ``t`` is ``(t - w, t]``: reads end at ``t``, so nothing published
after ``t`` is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import redis

from features import WINDOW_MS, FeatureSpec, FeatureValue, Job, Value, run_jobs, samples
from headwater.keys import Keys


def window_mean(timestamps: np.ndarray, values: np.ndarray, start_excl: int, end_incl: int) -> float | None:
    """Mean of the values with start_excl < timestamp <= end_incl; None if there are none."""
    mask = (timestamps > start_excl) & (timestamps <= end_incl)
    if not mask.any():
        return None
    return float(np.mean(values[mask]))


def mention_velocity(
    timestamps: np.ndarray, counts: np.ndarray, t: int, window_ms: int, baseline_ms: int
) -> float | None:
    """Mentions in (t - window, t] over the average per window in (t - baseline, t]; None without a baseline."""
    in_baseline = (timestamps > t - baseline_ms) & (timestamps <= t)
    baseline = float(np.sum(counts[in_baseline])) * window_ms / baseline_ms
    if baseline <= 0:
        return None
    recent = float(np.sum(counts[(timestamps > t - window_ms) & (timestamps <= t)]))
    return recent / baseline


def _mean_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int) -> Job:
    window = WINDOW_MS[spec.properties["window"]]

    def finish(replies: list) -> tuple[Value, int] | None:
        ts, vals = samples(replies[0])
        value = window_mean(ts, vals, t - window, t)
        return None if value is None else (value, int(ts[-1]))

    key = keys.sentiment(ticker, spec.properties["series"])
    return Job(spec, ticker, [("TS.RANGE", key, t - window + 1, t)], finish)


def _velocity_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int) -> Job:
    window = WINDOW_MS[spec.properties.get("window", "1h")]
    baseline = WINDOW_MS[spec.properties.get("baseline", "24h")]

    def finish(replies: list) -> tuple[Value, int] | None:
        ts, counts = samples(replies[0])
        value = mention_velocity(ts, counts, t, window, baseline)
        return None if value is None else (value, int(ts[-1]))

    key = keys.mentions(ticker, spec.properties.get("series", "social"))
    return Job(spec, ticker, [("TS.RANGE", key, t - baseline + 1, t)], finish)


JOBS = {"sentiment_mean": _mean_job, "mention_velocity": _velocity_job}


def compute(
    client: redis.Redis, keys: Keys, specs: Sequence[FeatureSpec], tickers: Sequence[str], as_of_ms: int
) -> list[FeatureValue]:
    """Sentiment feature values of ``tickers`` at ``as_of_ms`` (one pipelined round trip)."""
    for spec in specs:
        if spec.properties.get("computation") not in JOBS:
            raise ValueError(f"sentiment feature {spec.name}:{spec.variant}: unknown computation")
    jobs = [JOBS[spec.properties["computation"]](keys, spec, ticker, as_of_ms) for ticker in tickers for spec in specs]
    return run_jobs(client, jobs, as_of_ms)
