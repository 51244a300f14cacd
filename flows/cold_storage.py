"""Cold storage: the audit log and compliance data in the Archive tier (7+ years), warm-data expiry, rehydration.

    python -m flows.cold_storage run [--older-than-days N] [--dry-run] [--no-prefect]   # the scheduled flow
    python -m flows.cold_storage flush-audit                                          # audit:log -> Blob now
    python -m flows.cold_storage tier [--older-than-days N] [--dry-run]               # -> Archive tier
    python -m flows.cold_storage rehydrate PATH [--container cold] [--to PATH] [--priority Standard|High]
                                                [--in-place] [--wait SECONDS]
    python -m flows.cold_storage status PATH [--container cold]

The flow ``cold_storage`` (daily) does three things:

1. flushes the audit buffer (stream ``audit:log``) to new blobs ``cold/audit/{YYYY}/{MM}/{DD}/{HH}-...jsonl``
   (``headwater.audit``);
2. moves blobs under the cold prefixes (``audit/``, ``compliance/``; config/retention.yaml ``cold``) older than
   ``cold.archive_tier_after_days`` to the **Archive** access tier (``set_standard_blob_tier``). Azure's
   lifecycle-management policies would do this on a real account (and Azurite does not emulate them), so the
   pipeline does it itself; on Azure also lock the ``cold`` container with a time-based immutability policy of
   ``cold.min_retention_years`` -- the pipeline never deletes cold data;
3. deletes warm partitions whose *data* (the date in the path, not the upload time: month files are rewritten
   when merged) is older than ``warm.days`` (2 years), recording a ``deleted`` audit event.

Reading archived data: a blob in the Archive tier is offline -- a read fails with ``BlobArchived`` -- until it
is **rehydrated** to an online tier. ``rehydrate`` does it explicitly:

* default: copy to a new blob (``rehydrated/{PATH}`` in the same container, or ``--to``) in the Hot tier with
  ``rehydrate_priority`` -- Microsoft's recommended way; the archived original stays untouched (immutability,
  no early-deletion charge: Archive bills at least 180 days);
* ``--in-place``: set the blob's own tier back to Hot.

On Azure, rehydration takes **hours**: Standard priority up to 15 h, High priority usually under 1 h for blobs
under 10 GB. Until then the destination's ``archive_status`` is ``rehydrate-pending-to-hot`` (``status`` shows
it; ``--wait`` polls). On Azurite both ways complete at once.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import StandardBlobTier
from prefect import flow, get_run_logger

from flows.context import FlowContext, flow_context
from flows.retry import io_task
from headwater import audit, retention
from headwater.metrics import OUTCOME_HOOKS
from headwater.storage.blob import BlobStore

REHYDRATED_PREFIX = "rehydrated/"
# Date of the data in a warm path: bars/{TF}/{T}/{YYYY}/{MM}.parquet, signals/{T}/{YYYY}/{MM}.parquet,
# news|social/{T}/{YYYY-MM-DD}.jsonl
_WARM_MONTH = re.compile(r"/(?P<y>\d{4})/(?P<m>\d{2})\.parquet$")
_WARM_DAY = re.compile(r"/(?P<d>\d{4}-\d{2}-\d{2})\.jsonl$")


class BlobArchivedError(RuntimeError):
    """The blob is in the Archive tier: rehydrate it before reading."""


@dataclass
class TierReport:
    container: str
    older_than_days: float
    dry_run: bool = False
    examined: int = 0
    moved: list[str] = field(default_factory=list)
    already_archived: int = 0


@dataclass
class PruneReport:
    container: str
    older_than_days: float
    dry_run: bool = False
    examined: int = 0
    deleted: list[str] = field(default_factory=list)


@dataclass
class RehydrateResult:
    container: str
    source: str
    destination: str
    tier: str | None
    archive_status: str | None  # e.g. "rehydrate-pending-to-hot" on Azure until done; None when readable
    done: bool


def read_blob(store: BlobStore, container: str, path: str) -> bytes:
    """Download a blob; an archived one raises ``BlobArchivedError`` naming the rehydrate command."""
    try:
        return store.get(container, path)
    except HttpResponseError as exc:
        if getattr(exc, "error_code", None) == "BlobArchived":
            raise BlobArchivedError(
                f"{container}/{path} is in the Archive tier; run `python -m flows.cold_storage rehydrate "
                f"--container {container} {path}` and read {REHYDRATED_PREFIX}{path} once it is done"
            ) from exc
        raise


def tier_to_archive(store: BlobStore, *, older_than_days: float | None = None, prefixes: tuple[str, ...] | None = None,
                    now: datetime | None = None, dry_run: bool = False) -> TierReport:  # fmt: skip
    """Move cold blobs (``prefixes``) created more than ``older_than_days`` ago to the Archive tier."""
    policy = retention.load_policy()
    days = policy.cold_archive_tier_after_days if older_than_days is None else older_than_days
    container = store.settings.cold_container
    report = TierReport(container, days, dry_run)
    limit = (now or datetime.now(UTC)) - timedelta(days=days)
    client = store.service.get_container_client(container)
    for prefix in prefixes or policy.cold_prefixes:
        try:
            blobs = list(client.list_blobs(name_starts_with=prefix))
        except ResourceNotFoundError:
            return report
        for blob in blobs:
            report.examined += 1
            if blob.blob_tier == "Archive":
                report.already_archived += 1
                continue
            if (blob.creation_time or blob.last_modified) > limit:
                continue
            if not dry_run:
                store.set_tier(container, blob.name, StandardBlobTier.ARCHIVE)
            report.moved.append(blob.name)
    return report


def prune_warm(store: BlobStore, *, older_than_days: float | None = None, now: datetime | None = None,
               dry_run: bool = False) -> PruneReport:  # fmt: skip
    """Delete warm partitions whose data is older than ``warm.days`` (by the date in the path)."""
    days = retention.load_policy().warm_days if older_than_days is None else older_than_days
    container = store.settings.warm_container
    report = PruneReport(container, days, dry_run)
    limit = ((now or datetime.now(UTC)) - timedelta(days=days)).date()
    try:
        names = store.list(container)
    except ResourceNotFoundError:
        return report
    for name in names:
        report.examined += 1
        if m := _WARM_MONTH.search(name):
            y, mo = int(m["y"]), int(m["m"])
            last_day = (datetime(y + (mo == 12), mo % 12 + 1, 1) - timedelta(days=1)).date()
        elif m := _WARM_DAY.search(name):
            last_day = datetime.strptime(m["d"], "%Y-%m-%d").date()
        else:
            continue
        if last_day < limit:
            if not dry_run:
                store.service.get_blob_client(container, name).delete_blob()
            report.deleted.append(name)
    return report


def rehydrate(store: BlobStore, path: str, *, container: str | None = None, to: str | None = None,
              priority: str = "Standard", in_place: bool = False, wait_s: float = 0.0,
              poll_s: float = 60.0) -> RehydrateResult:  # fmt: skip
    """Bring an archived blob back online (see the module doc); ``wait_s`` > 0 polls until it is readable."""
    if priority not in ("Standard", "High"):
        raise ValueError("priority must be Standard or High")
    container = container or store.settings.cold_container
    source = store.service.get_blob_client(container, path)
    props = source.get_blob_properties()
    if in_place:
        destination = source
        if props.blob_tier == "Archive":
            source.set_standard_blob_tier(StandardBlobTier.HOT, rehydrate_priority=priority)
    else:
        destination = store.service.get_blob_client(container, to or f"{REHYDRATED_PREFIX}{path}")
        destination.start_copy_from_url(source.url, standard_blob_tier=StandardBlobTier.HOT, rehydrate_priority=priority)
    deadline = time.monotonic() + wait_s
    while True:
        p = destination.get_blob_properties()
        copying = not in_place and p.copy is not None and p.copy.status == "pending"
        done = p.blob_tier != "Archive" and not p.archive_status and not copying
        if done or time.monotonic() >= deadline:
            return RehydrateResult(container, path, destination.blob_name, p.blob_tier, p.archive_status, done)
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def blob_status(store: BlobStore, path: str, container: str | None = None) -> dict[str, Any]:
    container = container or store.settings.cold_container
    p = store.service.get_blob_client(container, path).get_blob_properties()
    return {"container": container, "path": path, "tier": p.blob_tier, "archive_status": p.archive_status,
            "rehydrate_priority": p.rehydrate_priority, "size": p.size, "created": p.creation_time.isoformat(),
            "copy_status": p.copy.status if p.copy else None}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Prefect
# ------------------------------------------------------------------------------------------------------------


BLOB_TASK = io_task(retry_delay_seconds=[5, 30, 120])


@BLOB_TASK
def flush_audit_task(ctx: FlowContext) -> dict[str, Any]:
    """Buffered audit events -> new blobs in the cold container."""
    result = audit.flush(ctx.client, ctx.keys, ctx.store)
    return {"events": result.events, "blobs": result.blobs}


@BLOB_TASK
def tier_task(ctx: FlowContext, older_than_days: float | None, dry_run: bool) -> dict[str, Any]:
    """Old audit/compliance blobs -> Archive tier."""
    report = tier_to_archive(ctx.store, older_than_days=older_than_days, dry_run=dry_run)
    if report.moved and not dry_run:
        audit.record(ctx.client, ctx.keys, "archived", actor=ctx.actor, dataset="cold", count=len(report.moved),
                     detail={"tier": "Archive", "container": report.container, "first": report.moved[0]})  # fmt: skip
    return asdict(report)


@BLOB_TASK
def prune_task(ctx: FlowContext, dry_run: bool) -> dict[str, Any]:
    """Warm partitions older than warm.days -> deleted."""
    report = prune_warm(ctx.store, dry_run=dry_run)
    if report.deleted and not dry_run:
        audit.record(ctx.client, ctx.keys, "deleted", actor=ctx.actor, dataset="warm", count=len(report.deleted),
                     detail={"container": report.container, "older_than_days": report.older_than_days})  # fmt: skip
    return asdict(report)


@flow(name="cold_storage", **OUTCOME_HOOKS)
def cold_storage(older_than_days: float | None = None, prune: bool = True, dry_run: bool = False) -> dict[str, Any]:
    """Flush the audit log, move old cold blobs to the Archive tier, expire warm data past its retention."""
    logger = get_run_logger()
    with flow_context(actor="flow:cold_storage") as ctx:
        flushed = flush_audit_task(ctx) if not dry_run else {"events": 0, "blobs": []}
        tiered = tier_task(ctx, older_than_days, dry_run)
        pruned = prune_task(ctx, dry_run) if prune else None
    logger.info("audit: %d events flushed to %d blobs; %d blobs to the Archive tier; %s warm partitions deleted",
                flushed["events"], len(flushed["blobs"]), len(tiered["moved"]),
                len(pruned["deleted"]) if pruned else "no")  # fmt: skip
    return {"audit": flushed, "tier": tiered, "prune": pruned}


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m flows.cold_storage", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="the scheduled flow: flush audit, tier, prune warm")
    p_run.add_argument("--older-than-days", type=float, default=None, help="Archive-tier age (default config)")
    p_run.add_argument("--no-prune", action="store_true", help="keep warm data past its retention")
    p_run.add_argument("--dry-run", action="store_true")
    p_run.add_argument("--no-prefect", action="store_true", help="run the steps without the Prefect flow")
    sub.add_parser("flush-audit", help="write buffered audit events to Blob now")
    p_tier = sub.add_parser("tier", help="move old audit/compliance blobs to the Archive tier")
    p_tier.add_argument("--older-than-days", type=float, default=None)
    p_tier.add_argument("--dry-run", action="store_true")
    p_re = sub.add_parser("rehydrate", help="bring an archived blob back online (hours on Azure)")
    p_re.add_argument("path")
    p_re.add_argument("--container", default=None, help="default: the cold container")
    p_re.add_argument("--to", default=None, help=f"destination path (default {REHYDRATED_PREFIX}PATH)")
    p_re.add_argument("--priority", choices=("Standard", "High"), default="Standard")
    p_re.add_argument("--in-place", action="store_true", help="set the blob's own tier back to Hot instead of copying")
    p_re.add_argument("--wait", type=float, default=0.0, help="poll up to this many seconds until readable")
    p_st = sub.add_parser("status", help="tier and rehydration status of a blob")
    p_st.add_argument("path")
    p_st.add_argument("--container", default=None)
    args = parser.parse_args(argv)
    setup_logging()
    if args.command == "run" and not args.no_prefect:
        print(orjson.dumps(cold_storage(args.older_than_days, not args.no_prune, args.dry_run)).decode())
        return 0
    ctx = flow_context(actor="cli:cold_storage")
    if args.command == "run":
        out = {"audit": asdict(audit.flush(ctx.client, ctx.keys, ctx.store)) if not args.dry_run else None,
               "tier": asdict(tier_to_archive(ctx.store, older_than_days=args.older_than_days, dry_run=args.dry_run)),
               "prune": asdict(prune_warm(ctx.store, dry_run=args.dry_run)) if not args.no_prune else None}  # fmt: skip
    elif args.command == "flush-audit":
        out = asdict(audit.flush(ctx.client, ctx.keys, ctx.store))
    elif args.command == "tier":
        out = asdict(tier_to_archive(ctx.store, older_than_days=args.older_than_days, dry_run=args.dry_run))
    elif args.command == "rehydrate":
        result = rehydrate(ctx.store, args.path, container=args.container, to=args.to, priority=args.priority,
                           in_place=args.in_place, wait_s=args.wait)  # fmt: skip
        if result.done:
            audit.record(ctx.client, ctx.keys, "restored", actor="cli:rehydrate", dataset="cold", count=1,
                         detail={"source": result.source, "destination": result.destination})  # fmt: skip
        out = asdict(result)
    else:
        out = blob_status(ctx.store, args.path, args.container)
    print(orjson.dumps(out).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
