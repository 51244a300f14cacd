"""Great Expectations 1.x gates: one suite per dataset (``bars``, ``articles``, ``posts``), built in code.

Every batch a flow fetches goes through ``<dataset>.validate_batch(df)`` before anything is written:

    good, quarantined = bars.validate_batch(frame)

``good`` holds the rows every expectation accepted (original columns, original order); ``quarantined`` one
``Quarantined(row, failed)`` per rejected row with the expectations it failed (e.g.
``expect_column_pair_values_a_to_be_greater_than_b(high>=close)``). The flows write those to
``stream:quarantine`` (``flows.gate.quarantine``). A suite that cannot run at all on a batch (a missing column)
quarantines the whole batch with the error as the failed expectation: nothing passes unchecked.

The context is a GX *file* context under ``$HEADWATER_GX_HOME/gx`` (default ``$HEADWATER_HOME/gx``, i.e.
``.headwater/gx/``, git-ignored): suites, validation definitions and every batch's validation result are kept
there, and ``python -m expectations.docs`` renders them as Data Docs (the data-quality report). Progress bars and
usage statistics are off. One context per process, created under a file lock (several workers share the folder);
validation is serialised per process (GX is not thread-safe).

Each dataset module defines ``NAME``, ``build_suite()`` (the expectations) and ``prepare(df)`` (derived columns
the expectations read, e.g. ``in_session``); those columns are dropped again from ``good``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from headwater.settings import headwater_home

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before GX is imported anywhere: no usage statistics

if TYPE_CHECKING:
    import great_expectations as gx

log = logging.getLogger("headwater.expectations")

DATASOURCE = "headwater"


@dataclass(frozen=True)
class Quarantined:
    """One rejected row (JSON-safe values) and the expectations it failed."""

    row: dict[str, Any]
    failed: tuple[str, ...]


@dataclass
class Outcome:
    """The result of gating one batch; unpacks as ``good, quarantined``."""

    good: pd.DataFrame
    quarantined: list[Quarantined] = field(default_factory=list)
    checked: int = 0
    failed_expectations: dict[str, int] = field(default_factory=dict)  # label -> rows failing it
    kept: np.ndarray = field(default_factory=lambda: np.arange(0))  # positions in the validated frame of ``good``

    def __iter__(self) -> Iterator[Any]:
        return iter((self.good, self.quarantined))


def gx_project_dir() -> Path:
    """The folder holding ``gx/``: ``$HEADWATER_GX_HOME``, else ``$HEADWATER_HOME`` (``<repo>/.headwater``)."""
    explicit = os.environ.get("HEADWATER_GX_HOME")
    if explicit:
        return Path(explicit).expanduser().absolute()
    return headwater_home()


_contexts: dict[Path, Any] = {}
_definitions: dict[tuple[Path, str], Any] = {}
_lock = threading.RLock()


def context() -> gx.data_context.FileDataContext:
    """This process's GX file context (created on first use, under a file lock)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root = gx_project_dir()
    with _lock:
        if root not in _contexts:
            root.mkdir(parents=True, exist_ok=True)
            with _file_lock(root / ".gx.lock"):
                ctx = gx.get_context(mode="file", project_root_dir=str(root))
                bars = ctx.variables.progress_bars
                shown = bars.get("globally", True) if isinstance(bars, dict) else getattr(bars, "globally", True)
                if shown:
                    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
                    ctx.variables.save()
            _contexts[root] = ctx
        return _contexts[root]


def _signature(suite: Any) -> list[str]:
    """What a suite checks, without GX's generated ids: equal signatures = the same suite."""
    out = []
    for expectation in suite.expectations:
        config = expectation.configuration.to_json_dict()
        config.pop("id", None)
        out.append(json.dumps(config, sort_keys=True, default=str))
    return sorted(out)


def definition(name: str, build_suite: Callable[[], gx.ExpectationSuite]) -> gx.ValidationDefinition:
    """The validation definition of one dataset: its suite (built in code) on a whole-DataFrame batch.

    Stored objects are reused when they match the code, and only rewritten when the code changed: several
    processes share the folder, and GX refuses to run a definition whose suite another process has rewritten.
    """
    import great_expectations as gx

    root = gx_project_dir()
    with _lock:
        cached = _definitions.get((root, name))
        if cached is not None:
            return cached
        ctx = context()
        with _file_lock(root / ".gx.lock"):
            try:  # never add_or_update: replacing the data source would drop the other datasets' assets
                source = ctx.data_sources.get(DATASOURCE)
            except (KeyError, LookupError, ValueError):
                source = ctx.data_sources.add_pandas(DATASOURCE)
            try:
                asset = source.get_asset(name)
            except LookupError:
                asset = source.add_dataframe_asset(name)
            try:
                batch = asset.get_batch_definition(name)
            except (KeyError, LookupError, ValueError):
                batch = asset.add_batch_definition_whole_dataframe(name)
            wanted = build_suite()
            try:
                suite = ctx.suites.get(name)
            except Exception:  # noqa: BLE001 - GX raises several "not found" types
                suite = None
            if suite is None or _signature(suite) != _signature(wanted):
                suite = ctx.suites.add_or_update(wanted)
            try:
                vd = ctx.validation_definitions.get(name)
            except Exception:  # noqa: BLE001
                vd = None
            if vd is None or vd.suite.id != suite.id or vd.data.id != batch.id:
                vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        _definitions[(root, name)] = vd
        return vd


def with_ahead_s(df: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """A copy of ``df`` with ``ahead_s``: how far ``time_column`` (epoch ms) lies in the future, in seconds.

    The suites' "not in the future" expectation looks at it (time-zone mix-ups show up as hours ahead).
    """
    frame = df.copy()
    if time_column in frame:
        frame["ahead_s"] = (pd.to_numeric(frame[time_column], errors="coerce") - time.time() * 1000) / 1000
    return frame


def label(config: Any) -> str:
    """A readable name of an expectation: its type and the columns it looks at."""
    kw = config.kwargs
    if "column_A" in kw:
        target = f"{kw['column_A']}>={kw['column_B']}" if kw.get("or_equal") else f"{kw['column_A']}>{kw['column_B']}"
    elif "column_list" in kw:
        target = ",".join(kw["column_list"])
    else:
        target = str(kw.get("column", ""))
    return f"{config.type}({target})"


def validate(
    name: str, build_suite: Callable[[], gx.ExpectationSuite], prepare: Callable[[pd.DataFrame], pd.DataFrame],
    df: pd.DataFrame,
) -> Outcome:  # fmt: skip
    """Run dataset ``name``'s suite on ``df``; split it into accepted rows and quarantined rows."""
    original = list(df.columns)
    frame = prepare(df.reset_index(drop=True))
    if frame.empty:
        return Outcome(good=frame[original], checked=0, kept=np.arange(0))
    from great_expectations.exceptions.resource_freshness import ResourceFreshnessAggregateError

    def run(result_format: str) -> Any:
        try:
            return definition(name, build_suite).run(batch_parameters={"dataframe": frame}, result_format=result_format)
        except ResourceFreshnessAggregateError:  # another process changed the stored suite: reload, then once more
            _definitions.pop((gx_project_dir(), name), None)
            return definition(name, build_suite).run(batch_parameters={"dataframe": frame}, result_format=result_format)

    with _lock:
        result = run("BOOLEAN_ONLY")  # the common case, three times cheaper; row indexes only when something failed
        if not result.success:
            result = run("COMPLETE")
    failures: dict[int, list[str]] = {}
    counts: dict[str, int] = {}
    for r in result.results:
        if r.success:
            continue
        what = label(r.expectation_config)
        raised = (r.exception_info or {}).get("raised_exception")
        indexes = r.result.get("unexpected_index_list") if r.result else None
        if raised or indexes is None:  # the expectation could not run: nothing in this batch is vouched for
            message = (r.exception_info or {}).get("exception_message") or "no row-level result"
            what = f"{what}: {str(message)[:200]}"
            indexes = list(range(len(frame)))
        rows = [int(i) for i in indexes]
        counts[what] = len(rows)
        for i in rows:
            failures.setdefault(i, []).append(what)
    bad = sorted(failures)
    quarantined = [Quarantined(_json_safe(frame.loc[i, original].to_dict()), tuple(failures[i])) for i in bad]
    kept = np.setdiff1d(np.arange(len(frame)), np.asarray(bad, dtype=np.int64), assume_unique=True)
    good = (frame.iloc[kept] if bad else frame)[original].reset_index(drop=True)
    return Outcome(good=good, quarantined=quarantined, checked=len(frame), failed_expectations=counts, kept=kept)


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if hasattr(value, "item"):  # numpy scalar
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
        out[str(key)] = value
    return out


class _file_lock:  # noqa: N801 - used as a context manager
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self._f = open(self.path, "a")  # noqa: SIM115
        fcntl.flock(self._f, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()
