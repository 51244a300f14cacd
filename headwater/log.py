"""Logging set-up for command-line entry points (never at import time)."""

from __future__ import annotations

import logging
import os
import re
import sys

_SECRET_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@", re.I)
_SECRET_PARAM = re.compile(r"(?P<k>(?:apikey|api_key|apiKey|token|password|AccountKey|SharedAccessSignature|sig)=)(?P<v>[^&;\s\"']+)")


def redact(text: str) -> str:
    """Hide passwords in URLs and secret-looking query/connection-string parameters."""
    text = _SECRET_URL.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['k']}***", text)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str | int | None = None, json_format: bool | None = None) -> None:
    """Configure the root logger for a CLI: one line per record, secrets redacted.

    ``HEADWATER_LOG_LEVEL`` and ``HEADWATER_LOG_JSON=1`` override the defaults.
    """
    level = level or os.environ.get("HEADWATER_LOG_LEVEL", "INFO")
    if json_format is None:
        json_format = os.environ.get("HEADWATER_LOG_JSON", "") in {"1", "true", "yes"}
    fmt = (
        '{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
        if json_format
        else "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "urllib3", "azure", "websockets", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
