"""The ``articles`` suite: news articles as fetched (NewsAPI), before they enter ``stream:raw_news``.

Columns: ``id`` (hash of the URL), ``url, title, description, content, source, author, published_ms`` (epoch ms
UTC), ``query`` (the ticker whose search found it).

| expectation | why |
|---|---|
| no nulls in ``id``, ``url``, ``title``, ``published_ms`` | |
| ``url`` matches ``^https?://`` | |
| ``title`` is 1-1000 characters and not ``[Removed]`` | NewsAPI serves removed articles as stubs |
| ``ahead_s <= 300`` | not published in the future (time-zone mix-ups) |
| ``id`` unique | one row per URL in a batch (the caller drops repeats first and counts them as duplicates) |
"""

from __future__ import annotations

import pandas as pd

from expectations import Outcome, validate, with_ahead_s

NAME = "articles"
COLUMNS = ["id", "url", "title", "description", "content", "source", "author", "published_ms", "query"]


def build_suite():  # noqa: ANN201 - gx.ExpectationSuite
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=NAME)
    for column in ("id", "url", "title", "published_ms"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(column="url", regex=r"^https?://\S+$"))
    suite.add_expectation(gxe.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1, max_value=1000))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeInSet(column="title", value_set=["[Removed]"]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="ahead_s", max_value=300,
                                                            description="not published in the future"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="id"))
    return suite


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    return with_ahead_s(df, "published_ms")


def validate_batch(df: pd.DataFrame) -> Outcome:
    """Gate a batch of articles: ``good, quarantined = validate_batch(df)``."""
    return validate(NAME, build_suite, prepare, df)
