"""Backfill throughput: bars/s the historical backfiller lands in RedisTimeSeries, against a raw TS.MADD loop.

    .venv/bin/python bench/backfill_throughput.py --json [--tickers 8] [--months 2] [--month 2024-03] [--parallel 4] [--repeat 3]

Starts what it needs in a temporary folder: Redis Stack (``devstack.start_redis``), a Prefect server
(``start_prefect``) and the REST stand-in in its own process, its clock pinned just after ``--month``. Then:

1. a warm-up backfill of ``--tickers`` x ``--months`` months (ending with ``--month``) of 1-minute bars
   (``--no-daily``): the stand-in simulates each month once and keeps the built answers, as a provider serves a
   closed month (reported as ``cold_*``);
2. ``--repeat`` times, alternating: the timed backfill of the same units under a fresh key prefix, through the
   flow (Prefect tasks, Alpha Vantage client + JSON parse, GX ``bars`` gate, TS.MADD writer, checkpoints), and
   the baseline: the same bars, read back, written under another prefix by a plain redis-py loop of TS.MADD
   commands (2,000 bars = 10,000 samples per command, series created beforehand) -- what "just write it" costs.

``rows_per_s`` is bars stored / wall time of the whole flow run (start and end of the run included), the median
over the repeats; ``baseline_rows_per_s`` the median of the baselines; ``ratio`` = the two (target 0.5);
``store_rows_per_s`` / ``store_ratio`` use the time inside the writer instead (``hot_write_ms``, summed over the
units: with ``--parallel`` writes overlapping, the sum exceeds the wall time and the store ratio understates). The
quota file used allows every request at once: the bench measures the pipeline, not Alpha Vantage's per-minute
limit (75/min would add ~0.8 s per request). Prints ONE JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import devstack
from headwater.keys import BAR_FIELDS
from headwater.timeframes import DAY_MS, NEW_YORK

REPO = Path(__file__).resolve().parent.parent

TICKERS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "XOM", "JNJ", "V", "WMT")
CHUNK_BARS = 2000

STANDIN = """
import json, sys, threading
from standins.http_server import ProviderStandIn
hub = ProviderStandIn(clock=lambda: float(sys.argv[1])).start()
print(json.dumps(hub.base_urls()), flush=True)
threading.Event().wait()
"""


def month_end_clock(month: str) -> float:
    """Epoch seconds at 01:00 New York on the next month's first day: the month is over, every bar complete."""
    year, mon = int(month[:4]), int(month[5:])
    return dt.datetime(year + mon // 12, mon % 12 + 1, 1, 1, 0, tzinfo=NEW_YORK).timestamp()


def start_standin(clock: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", STANDIN, str(clock)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.kill()
        raise RuntimeError("the REST stand-in did not start")
    return proc, json.loads(line)["alphavantage"]


def read_bars(client, keys, tickers: list[str]) -> dict[str, dict[str, list[tuple[int, float]]]]:  # noqa: ANN001
    """Every stored 1-minute bar of the tickers, per ticker and field."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for ticker in tickers:
        out[ticker] = {f: [(int(t), float(v)) for t, v in client.execute_command(
            "TS.RANGE", keys.provider_bar(ticker, "alphavantage", "1m", f), "-", "+")] for f in BAR_FIELDS}  # fmt: skip
    return out


def raw_tsmadd(client, keys, bars: dict[str, dict[str, list[tuple[int, float]]]]) -> tuple[int, float]:  # noqa: ANN001
    """The baseline: write the same bars with a plain loop of TS.MADD commands; returns (bars, seconds)."""
    from headwater.storage.timeseries import ensure_series

    for ticker in bars:
        for f in BAR_FIELDS:
            ensure_series(client, keys.provider_bar(ticker, "alphavantage", "1m", f), 10 * 365 * DAY_MS,
                          {"ticker": ticker, "field": f}, duplicate_policy="LAST")  # fmt: skip
    rows = sum(len(b["close"]) for b in bars.values())
    started = time.perf_counter()
    for ticker, fields in bars.items():
        n = len(fields["close"])
        for start in range(0, n, CHUNK_BARS):
            args: list[object] = []
            for f in BAR_FIELDS:
                key = keys.provider_bar(ticker, "alphavantage", "1m", f)
                for t, v in fields[f][start : start + CHUNK_BARS]:
                    args += (key, t, v)
            client.execute_command("TS.MADD", *args)
    return rows, time.perf_counter() - started


def run(tickers: int, month: str, parallel: int, repeat: int = 3, months: int = 2) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    redis_handle = devstack.start_redis(home / "redis")
    prefect_handle = devstack.start_prefect(home / "prefect")
    standin, av_url = start_standin(month_end_clock(month))
    quota_file = home / "data_sources.yaml"
    quota_file.write_text("providers:\n  alphavantage:\n    quota: {per_second: 100000}\n")
    import yaml

    from headwater.retention import RETENTION_FILE

    policy = yaml.safe_load(RETENTION_FILE.read_text())
    policy["hot"]["kinds"]["bars"]["days"] = 3650  # the bench months must land in Redis, not in warm storage
    retention_file = home / "retention.yaml"
    retention_file.write_text(yaml.safe_dump(policy))
    os.environ.update({
        "PREFECT_API_URL": prefect_handle.url, "PREFECT_LOGGING_LEVEL": "WARNING", "HEADWATER_REDIS_URL": redis_handle.url,
        "HEADWATER_ALPHAVANTAGE_BASE_URL": av_url, "HEADWATER_RETENTION_FILE": str(retention_file),
        "HEADWATER_GX_HOME": str(home / "gx"), "HEADWATER_STANDIN_DISCOVER": "false",
    })  # fmt: skip
    try:
        import redis

        from flows.historical_data_backfiller import historical_data_backfiller
        from headwater.keys import Keys

        symbols = list(TICKERS[:tickers])
        year, mon = int(month[:4]), int(month[5:])
        end = dt.date(year, mon, calendar.monthrange(year, mon)[1])
        args = {"tickers": symbols, "years": 0.1, "intraday_months": months, "include_daily": False, "end_date": end,
                "parallel": parallel, "progress": False, "data_sources": str(quota_file)}  # fmt: skip

        def backfill(prefix: str) -> tuple[dict, float]:
            os.environ["HEADWATER_REDIS_KEY_PREFIX"] = prefix
            started = time.perf_counter()
            summary = historical_data_backfiller(**args)
            return summary, time.perf_counter() - started

        cold, cold_s = backfill("cold:")
        client = redis.Redis.from_url(redis_handle.url)
        runs, baselines = [], []
        for i in range(repeat):  # alternate, so both sides see the same machine
            timed, timed_s = backfill(f"timed{i}:")
            runs.append((timed, timed_s))
            bars = read_bars(client, Keys(f"timed{i}:"), symbols)
            baselines.append(raw_tsmadd(client, Keys(f"raw{i}:"), bars))
        stored = int(runs[0][0]["counts"]["hot"])
        rows = baselines[0][0]
        elapsed = statistics.median(s for _, s in runs)
        base_s = statistics.median(s for _, s in baselines)
        write_s = statistics.median(t["counts"]["hot_write_ms"] for t, _ in runs) / 1000
        rate, base_rate = stored / elapsed, rows / base_s
        return {
            "tickers": tickers, "months": months, "last_month": month, "parallel": parallel, "samples_per_row": len(BAR_FIELDS), "repeat": repeat,
            "rows": stored, "elapsed_s": round(elapsed, 3), "rows_per_s": round(rate),
            "runs_rows_per_s": [round(int(t["counts"]["hot"]) / s) for t, s in runs],
            "hot_write_s": round(write_s, 3), "store_rows_per_s": round(stored / write_s) if write_s else None,
            "baseline_rows": rows, "baseline_elapsed_s": round(base_s, 3), "baseline_rows_per_s": round(base_rate),
            "runs_baseline_rows_per_s": [round(n / s) for n, s in baselines],
            "ratio": round(rate / base_rate, 3), "store_ratio": round(stored / write_s / base_rate, 3) if write_s else None,
            "target_ratio": 0.5, "target_met": rate / base_rate >= 0.5,
            "cold_elapsed_s": round(cold_s, 3), "cold_rows_per_s": round(int(cold["counts"]["hot"]) / cold_s),
            "quarantined_rows": sum(int(t["counts"]["quarantined"]) for t, _ in runs),
        }  # fmt: skip
    finally:
        standin.terminate()
        standin.wait(timeout=10)
        prefect_handle.stop()
        redis_handle.stop()
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: the same, indented)")
    parser.add_argument("--tickers", type=int, default=8, help=f"tickers to backfill (at most {len(TICKERS)})")
    parser.add_argument("--month", default="2024-03", help="the last month of 1-minute bars (YYYY-MM)")
    parser.add_argument("--months", type=int, default=2, help="months per ticker (a unit of work each)")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="timed backfills and baselines (the medians are reported)")
    args = parser.parse_args(argv)
    result = run(min(args.tickers, len(TICKERS)), args.month, args.parallel, max(1, args.repeat), max(1, args.months))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
