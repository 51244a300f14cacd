"""Logging set-up for command-line entry points (never at import time)."""

from __future__ import annotations

import logging
import os
import re
import sys
import urllib.parse
from typing import Any

from pythonjsonlogger.json import JsonFormatter

_SECRET_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@", re.I)
_SECRET_PARAM = re.compile(r"(?P<k>(?:apikey|api_key|apiKey|token|password|AccountKey|SharedAccessSignature|sig)=)(?P<v>[^&;\s\"']+)")


def redact(text: str) -> str:
    """Hide passwords in URLs and secret-looking query/connection-string parameters."""
    text = _SECRET_URL.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['k']}***", text)


def redact_url(url: str) -> str:
    """Hide secrets in one URL or Azure connection string (``redact`` is for free text).

    ``redis://:pw@127.0.0.1:6379/0`` -> ``redis://:***@127.0.0.1:6379/0``; ``AccountKey=...`` and
    ``SharedAccessSignature=...`` in connection strings and ``password=`` in query strings become ``***``.
    """
    if not re.match(r"[A-Za-z][\w.+-]*://", url):  # Azure connection string: Key=value;...
        return re.sub(r"(?i)\b(AccountKey|SharedAccessSignature)=[^;]*", r"\1=***", url)
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    query = re.sub(r"(?i)(^|&)(password|sig|key)=[^&]*", r"\1\2=***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))



class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _RedactingJsonFormatter(JsonFormatter):
    """One JSON object per record (python-json-logger): ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``exc_info`` when an exception is attached, plus any ``extra=`` fields; strings redacted
    before they are serialized (redacting the serialized line could cut through an escape)."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {k: redact(v) if isinstance(v, str) else v for k, v in log_data.items()}


def json_formatter() -> logging.Formatter:
    """The formatter ``HEADWATER_LOG_JSON=1`` uses."""
    return _RedactingJsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        json_ensure_ascii=False,
    )


def setup_logging(level: str | int | None = None, json_format: bool | None = None) -> None:
    """Configure the root logger for a CLI: one line per record, secrets redacted.

    ``HEADWATER_LOG_LEVEL`` and ``HEADWATER_LOG_JSON=1`` (one JSON object per line, see ``json_formatter``)
    override the defaults.
    """
    level = level or os.environ.get("HEADWATER_LOG_LEVEL", "INFO")
    if json_format is None:
        json_format = os.environ.get("HEADWATER_LOG_JSON", "") in {"1", "true", "yes"}
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if json_format else _RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "urllib3", "azure", "websockets", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
