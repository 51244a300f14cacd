"""The ``posts`` suite: Reddit and X posts as fetched, before they enter ``stream:raw_social``.

Columns: ``id`` (``platform:post_id``), ``platform, post_id, text, author, created_ms`` (epoch ms UTC), ``url,
score, comments``, ``query`` (the subreddit or search that found it).

| expectation | why |
|---|---|
| no nulls in ``id``, ``post_id``, ``text``, ``created_ms`` | |
| ``platform`` in {reddit, x} | |
| ``text`` is 1-40,000 characters | Reddit self-posts are at most 40,000 |
| ``comments`` >= 0 | (``score`` may be negative on Reddit) |
| ``ahead_s <= 300`` | not created in the future |
| ``id`` unique | one row per post in a batch (repeats are dropped first and counted as duplicates) |
"""

from __future__ import annotations

import pandas as pd

from expectations import Outcome, validate, with_ahead_s

NAME = "posts"
COLUMNS = ["id", "platform", "post_id", "text", "author", "created_ms", "url", "score", "comments", "query"]


def build_suite():  # noqa: ANN201 - gx.ExpectationSuite
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=NAME)
    for column in ("id", "post_id", "text", "created_ms"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="platform", value_set=["reddit", "x"]))
    suite.add_expectation(gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=40_000))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="comments", min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="ahead_s", max_value=300,
                                                            description="not created in the future"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="id"))
    return suite


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    return with_ahead_s(df, "created_ms")


def validate_batch(df: pd.DataFrame) -> Outcome:
    """Gate a batch of posts: ``good, quarantined = validate_batch(df)``."""
    return validate(NAME, build_suite, prepare, df)
