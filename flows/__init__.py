"""Scheduled ingestion flows (Prefect 3), one module per source; ``prefect.yaml`` deploys them.

| flow | module | schedule | path |
|---|---|---|---|
| ``market_data_fetcher`` | ``market_data_fetcher.py`` | every minute | Alpha Vantage 1-min bars -> GX -> RedisTimeSeries |
| ``news_scraper`` | ``news_scraper.py`` | every 5 min | NewsAPI -> GX -> ``stream:raw_news`` -> ``headwater.processors.news`` |
| ``social_media_collector`` | ``social_media_collector.py`` | every 2 min | Reddit + X -> GX -> ``stream:raw_social`` -> ``headwater.processors.social`` |
| ``historical_data_backfiller`` | ``historical_data_backfiller.py`` | on demand | daily + intraday history -> GX -> RedisTimeSeries / Parquet in Blob |

Every run builds one ``FlowContext`` at its start (``context.py``: settings, Redis, keys, Blob, TimeSeries layout,
provider clients with the shared quota) and passes it to its tasks; I/O tasks carry the one retry policy
(``retry.py``: ``@io_task()``), batches pass the GX gate (``gate.py``), and ``common.py`` holds the run summary and
the raw-stream tasks. Bars are written with ``headwater.storage.timeseries``, warm Parquet with ``headwater.warm``.
``python -m flows.deploy`` creates the work pool and limits and deploys ``prefect.yaml``.
"""
