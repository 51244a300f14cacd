"""Azurite, Microsoft's Azure Storage emulator (blob service only), from ``node_modules`` (scripts/bootstrap.sh)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from devstack.process import LOOPBACK, REPO_ROOT, ServiceError, ServiceHandle, launch, on_free_port

log = logging.getLogger("devstack")

AZURITE_ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development key (public, documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(port: int, host: str = LOOPBACK) -> str:
    """Connection string for Azurite's well-known ``devstoreaccount1`` account."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{AZURITE_ACCOUNT};"
    )


def blob_ready(connection_string: str, timeout: float = 2.0) -> bool:
    """Whether the Blob endpoint answers Get Service Properties."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(
        connection_string, retry_total=0, connection_timeout=timeout, read_timeout=timeout
    ) as client:
        client.get_service_properties()
    return True


def start_azurite(data_dir: Path, port: int | None = None, *, timeout: float = 60.0) -> ServiceHandle:
    """Start Azurite's blob service on 127.0.0.1 with data in ``data_dir``; wait for Get Service Properties."""
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    exe = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not exe.exists():
        raise ServiceError(f"{exe} not found; run scripts/bootstrap.sh (installs Azurite with npm)")

    def start(port: int) -> ServiceHandle:
        cmd = [
            str(exe), "--blobHost", LOOPBACK, "--blobPort", str(port), "--location", str(data_dir),
            "--skipApiVersionCheck", "--disableTelemetry", "--silent",
        ]  # fmt: skip
        cs = azurite_connection_string(port)
        return launch("azurite", cmd, port=port, url=cs, log_path=data_dir / "azurite.log",
                      ready=lambda: blob_ready(cs), timeout=timeout, cwd=data_dir)  # fmt: skip

    started = time.monotonic()
    handle = on_free_port(port, start)
    log.info("azurite up on %s:%d (blob, account %s) in %.1fs", LOOPBACK, handle.port, AZURITE_ACCOUNT,
             time.monotonic() - started)  # fmt: skip
    return handle
