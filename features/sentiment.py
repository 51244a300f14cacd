"""Sentiment features from RedisTimeSeries: mean news/social sentiment over a window and mention velocity.

Inputs are the per-ticker series the news and social processors write (``ts:{T}:sentiment:news``,
``ts:{T}:sentiment:social``: scores in [-1, 1] at publish/creation time; ``ts:{T}:mentions:social``: mention
counts at post time). A window ``w`` at time ``t`` is ``(t - w, t]``: reads end at ``t``, so nothing published
after ``t`` is used.

Knowledge time: beside each series the processors keep ``ts:{T}:known:<series>`` with, at the same
timestamps, when the pipeline stored that sample (epoch ms). With ``time_basis="knowledge"`` (the default) a
sample counts at ``t`` only if it was also stored by ``t``; a sample without an ingest time (written before the
pipeline kept them) counts as known at its event time.
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


def known_by(replies: list, t: int, knowledge: bool) -> tuple[np.ndarray, np.ndarray]:
    """The samples of ``replies[0]``; with ``knowledge`` only those stored by ``t`` (ingest times in ``replies[1]``)."""
    ts, vals = samples(replies[0])
    if not knowledge or not len(ts):
        return ts, vals
    known_ts, stored = samples(replies[1])
    late = known_ts[stored > t]
    if not len(late):
        return ts, vals
    keep = ~np.isin(ts, late)
    return ts[keep], vals[keep]


def _reads(key: str, known: str, start: int, t: int, knowledge: bool) -> list[tuple]:
    reads = [("TS.RANGE", key, start, t)]
    return reads + [("TS.RANGE", known, start, t)] if knowledge else reads


def _mean_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int, knowledge: bool) -> Job:
    window = WINDOW_MS[spec.properties["window"]]

    def finish(replies: list) -> tuple[Value, int] | None:
        ts, vals = known_by(replies, t, knowledge)
        value = window_mean(ts, vals, t - window, t)
        return None if value is None else (value, int(ts[-1]))

    series = spec.properties["series"]
    reads = _reads(keys.sentiment(ticker, series), keys.known(ticker, "sentiment", series), t - window + 1, t, knowledge)
    return Job(spec, ticker, reads, finish)


def _velocity_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int, knowledge: bool) -> Job:
    window = WINDOW_MS[spec.properties.get("window", "1h")]
    baseline = WINDOW_MS[spec.properties.get("baseline", "24h")]

    def finish(replies: list) -> tuple[Value, int] | None:
        ts, counts = known_by(replies, t, knowledge)
        value = mention_velocity(ts, counts, t, window, baseline)
        return None if value is None else (value, int(ts[-1]))

    series = spec.properties.get("series", "social")
    reads = _reads(keys.mentions(ticker, series), keys.known(ticker, "mentions", series), t - baseline + 1, t, knowledge)
    return Job(spec, ticker, reads, finish)


JOBS = {"sentiment_mean": _mean_job, "mention_velocity": _velocity_job}


def compute(
    client: redis.Redis, keys: Keys, specs: Sequence[FeatureSpec], tickers: Sequence[str], as_of_ms: int,
    *, time_basis: str = "knowledge",
) -> list[FeatureValue]:
    """Sentiment feature values of ``tickers`` at ``as_of_ms`` (one pipelined round trip)."""
    for spec in specs:
        if spec.properties.get("computation") not in JOBS:
            raise ValueError(f"sentiment feature {spec.name}:{spec.variant}: unknown computation")
    knowledge = time_basis == "knowledge"
    jobs = [JOBS[spec.properties["computation"]](keys, spec, ticker, as_of_ms, knowledge) for ticker in tickers for spec in specs]
    return run_jobs(client, jobs, as_of_ms)
