"""Scheduled ingestion flows (Prefect 3), one module per source; ``prefect.yaml`` deploys them.

| flow | module | schedule | path |
|---|---|---|---|
| ``market_data_fetcher`` | ``market_data_fetcher.py`` | every minute | Alpha Vantage 1-min bars -> GX -> RedisTimeSeries |
| ``news_scraper`` | ``news_scraper.py`` | every 5 min | NewsAPI -> GX -> ``stream:raw_news`` -> ``processors/news.py`` |
| ``social_media_collector`` | ``social_media_collector.py`` | every 2 min | Reddit + X -> GX -> ``stream:raw_social`` -> ``processors/social.py`` |
| ``historical_data_backfiller`` | ``historical_data_backfiller.py`` | on demand | daily + intraday history -> GX -> RedisTimeSeries / Parquet in Blob |

Shared pieces (clients with the shared quota, retry policy, GX gate and quarantine, bar writer) are in
``common.py``; ``python -m flows.deploy`` creates the work pool and limits and deploys ``prefect.yaml``.
"""
