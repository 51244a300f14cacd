"""``python -m expectations.docs``: build the GX Data Docs (the data-quality report) and print the index path.

The report shows each dataset's suite and the validation result of every batch the flows gated (kept in the
file context under ``$HEADWATER_GX_HOME/gx``, default ``.headwater/gx/``). Results older than ``--keep-days``
(default 7) are pruned first so the report stays quick to build.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from expectations import articles, bars, context, definition, gx_project_dir, posts
from headwater.timeframes import DAY_S

SUITES = {m.NAME: m.build_suite for m in (bars, articles, posts)}


def prune(keep_days: float) -> int:
    """Delete stored validation results older than ``keep_days``; returns how many files went."""
    results = gx_project_dir() / "gx" / "uncommitted" / "validations"
    cutoff = time.time() - keep_days * DAY_S
    removed = 0
    for path in results.rglob("*.json") if results.exists() else []:
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def build(keep_days: float = 7.0) -> Path:
    """Register the suites, prune old results, render the Data Docs; returns the index.html path."""
    for name, build_suite in SUITES.items():
        definition(name, build_suite)
    prune(keep_days)
    ctx = context()
    ctx.build_data_docs()
    url = ctx.get_docs_sites_urls()[0]["site_url"]
    return Path(url.removeprefix("file://"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m expectations.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--keep-days", type=float, default=7.0, help="prune validation results older than this")
    args = parser.parse_args(argv)
    print(build(args.keep_days))
    return 0


if __name__ == "__main__":
    sys.exit(main())
