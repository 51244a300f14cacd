"""The append-only audit log: who/what ingested, validated, quarantined, archived, deleted or restored data.

Two stages, both append-only:

1. ``record(...)`` appends one event to the Redis stream ``audit:log`` (``audit_log_key(keys)``) -- cheap, and
   it can ride in the same pipeline/transaction as the write it describes. The stream has no MAXLEN: an
   event leaves Redis only after it is safely in Blob.
2. ``flush(...)`` (scheduled by ``flows/cold_storage.py``) writes the buffered events to the ``cold`` container
   as JSON lines, one **new** blob per UTC hour per flush, never overwriting one::

       audit/{YYYY}/{MM}/{DD}/{HH}-{FIRST_ID}-{LAST_ID}.jsonl      e.g. audit/2024/03/05/14-1709647200000-0-1709649000000-3.jsonl

   and only then removes the flushed entries from the stream. The name is derived from the entries, so a
   flush that crashed after uploading writes the very same blob again (accepted when identical, refused
   otherwise). Each line carries the stream entry ``id``: readers de-duplicate on it (``read_events``), which
   makes a repeated flush after a crash harmless. After ``cold.archive_tier_after_days`` the cold-storage flow
   moves the blobs to the Archive access tier; they are kept at least ``cold.min_retention_years``.

Event fields: ``event`` (one of ``EVENTS``), ``actor`` (who: ``flow:archive``, ``worker:host-123``, a person),
``dataset``, ``count``, ``ts`` (ms) and ``detail`` (a small JSON object: paths, ranges, reasons).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import ContentSettings

from headwater.keys import Keys
from headwater.storage.blob import BlobStore

EVENTS = ("ingested", "validated", "quarantined", "archived", "deleted", "restored")
AUDIT_PREFIX = "audit/"


def audit_log_key(keys: Keys) -> str:
    """The audit buffer stream: ``{prefix}audit:log`` (documented in docs/redis-keys.md)."""
    return keys.audit_log


class AuditError(RuntimeError):
    """An audit blob with the same name but other content exists (never overwritten)."""


def record(
    client: redis.Redis | redis.client.Pipeline,
    keys: Keys,
    event: str,
    *,
    actor: str,
    dataset: str,
    count: int = 0,
    detail: dict[str, Any] | None = None,
) -> Any:
    """Append one audit event to ``audit:log``; returns the entry id (or the pipeline, when queued on one)."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}; expected one of {', '.join(EVENTS)}")
    if not actor or not dataset:
        raise ValueError("audit events need an actor and a dataset")
    fields = {
        "event": event,
        "actor": actor,
        "dataset": dataset,
        "count": int(count),
        "ts": int(time.time() * 1000),
        "detail": orjson.dumps(detail or {}, option=orjson.OPT_SORT_KEYS),
    }
    return client.xadd(audit_log_key(keys), fields)


@dataclass(frozen=True)
class FlushResult:
    events: int
    blobs: list[str]


def _decode(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entry_id.decode()}
    for k, v in fields.items():
        name = k.decode()
        if name == "detail":
            out[name] = orjson.loads(v)
        elif name in ("count", "ts"):
            out[name] = int(v)
        else:
            out[name] = v.decode()
    return out


def _hour_of(entry_id: str) -> datetime:
    return datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, UTC)


def blob_path(hour: datetime, first_id: str, last_id: str) -> str:
    return f"{AUDIT_PREFIX}{hour:%Y/%m/%d/%H}-{first_id}-{last_id}.jsonl"


def _next_id(entry_id: str) -> str:
    ms, seq = entry_id.split("-")
    return f"{ms}-{int(seq) + 1}"


def flush(client: redis.Redis, keys: Keys, store: BlobStore, *, max_events: int = 100_000) -> FlushResult:
    """Move buffered events from ``audit:log`` to new blobs in the cold container (see the module doc)."""
    stream = audit_log_key(keys)
    entries = client.xrange(stream, "-", "+", count=max_events)
    if not entries:
        return FlushResult(0, [])
    by_hour: dict[datetime, list[dict[str, Any]]] = {}
    for entry_id, fields in entries:
        event = _decode(entry_id, fields)
        by_hour.setdefault(_hour_of(event["id"]).replace(minute=0, second=0, microsecond=0), []).append(event)
    container = store.settings.cold_container
    written = []
    for hour, events in sorted(by_hour.items()):
        path = blob_path(hour, events[0]["id"], events[-1]["id"])
        data = b"".join(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n" for e in events)
        _create_once(store, container, path, data)
        written.append(path)
    # Everything up to the last flushed entry is in Blob now: drop it (entries added meanwhile stay).
    client.xtrim(stream, minid=_next_id(entries[-1][0].decode()), approximate=False)
    return FlushResult(len(entries), written)


def _create_once(store: BlobStore, container: str, path: str, data: bytes) -> None:
    """Upload a new blob; an existing one is accepted only if byte-identical (a retried flush)."""
    blob = store.service.get_blob_client(container, path)
    try:
        blob.upload_blob(data, overwrite=False, content_settings=ContentSettings(content_type="application/x-ndjson"),
                         metadata={"kind": "audit"})  # fmt: skip
    except ResourceExistsError:
        if blob.download_blob().readall() != data:
            raise AuditError(f"audit blob {container}/{path} exists with other content; refusing to overwrite") from None


def read_events(store: BlobStore, day: datetime | None = None, *, prefix: str | None = None) -> list[dict[str, Any]]:
    """Audit events from the cold container (one UTC day, or everything under ``prefix``), de-duplicated by id.

    Blobs in the Archive tier cannot be read: rehydrate them first (``python -m flows.cold_storage rehydrate``).
    """
    container = store.settings.cold_container
    if prefix is None:
        prefix = f"{AUDIT_PREFIX}{day:%Y/%m/%d}/" if day else AUDIT_PREFIX
    seen: dict[str, dict[str, Any]] = {}
    for path in sorted(store.list(container, prefix)):
        try:
            data = store.get(container, path)
        except HttpResponseError as exc:
            if getattr(exc, "error_code", None) == "BlobArchived":
                raise AuditError(f"{container}/{path} is in the Archive tier; rehydrate it first "
                                 f"(python -m flows.cold_storage rehydrate {path}) and read the copy") from exc  # fmt: skip
            raise
        for line in data.splitlines():
            if line.strip():
                event = orjson.loads(line)
                seen.setdefault(event["id"], event)
    return sorted(seen.values(), key=lambda e: tuple(int(p) for p in e["id"].split("-")))
