"""Azure Blob storage (warm and cold tiers; raw documents). Azurite locally, Azure with a real connection string.

Containers: ``raw`` (raw filings and transcripts), ``warm`` (Parquet/JSONL archives, 2 years),
``cold`` (compliance data and audit logs, moved to the Archive access tier after a configured age).
Writes are idempotent by content: ``put`` with ``if_changed=True`` skips a blob whose stored content hash
already matches.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings, StandardBlobTier

from headwater.settings import BlobSettings, NotConfiguredError

log = logging.getLogger("headwater.storage.blob")


def resolve_connection_string(settings: BlobSettings | None = None) -> str:
    """``AZURE_STORAGE_CONNECTION_STRING``/``HEADWATER_BLOB_CONNECTION_STRING``, else Azurite's (services.env)."""
    settings = settings or BlobSettings()
    if settings.connection_string is None:
        raise NotConfiguredError("Blob storage", ("AZURE_STORAGE_CONNECTION_STRING", "HEADWATER_BLOB_CONNECTION_STRING"))
    return settings.connection_string.get_secret_value()


@dataclass(frozen=True)
class PutResult:
    url: str
    content_hash: str
    written: bool  # False when an identical blob was already there


class BlobStore:
    """Thin typed wrapper over ``BlobServiceClient`` with the project's containers and conventions."""

    def __init__(self, settings: BlobSettings | None = None, *, connection_string: str | None = None) -> None:
        self.settings = settings or BlobSettings()
        self.service = BlobServiceClient.from_connection_string(connection_string or resolve_connection_string(self.settings))

    def ensure_containers(self) -> None:
        """Create the raw/warm/cold containers if missing."""
        for name in (self.settings.raw_container, self.settings.warm_container, self.settings.cold_container):
            try:
                self.service.create_container(name)
                log.info("created blob container %s", name)
            except ResourceExistsError:
                pass

    def put(
        self,
        container: str,
        path: str,
        data: bytes,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
        if_changed: bool = True,
    ) -> PutResult:
        """Upload ``data``; with ``if_changed`` an identical existing blob (same SHA-256) is left alone."""
        digest = hashlib.sha256(data).hexdigest()
        blob = self.service.get_blob_client(container, path)
        if if_changed:
            try:
                if blob.get_blob_properties().metadata.get("content_sha256") == digest:
                    return PutResult(blob.url, digest, written=False)
            except ResourceNotFoundError:
                pass
        blob.upload_blob(
            data,
            overwrite=True,
            metadata={**(metadata or {}), "content_sha256": digest},
            content_settings=ContentSettings(content_type=content_type),
        )
        return PutResult(blob.url, digest, written=True)

    def get(self, container: str, path: str) -> bytes:
        return self.service.get_blob_client(container, path).download_blob().readall()

    def exists(self, container: str, path: str) -> bool:
        return self.service.get_blob_client(container, path).exists()

    def list(self, container: str, prefix: str = "") -> list[str]:
        return [b.name for b in self.service.get_container_client(container).list_blobs(name_starts_with=prefix)]

    def set_tier(self, container: str, path: str, tier: StandardBlobTier) -> None:
        """Move a blob between access tiers (Hot/Cool/Cold/Archive); Archive makes it unreadable until rehydrated."""
        self.service.get_blob_client(container, path).set_standard_blob_tier(tier)
