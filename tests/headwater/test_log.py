"""``HEADWATER_LOG_JSON=1``: every line is one JSON object, whatever the message holds; secrets stay redacted."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from headwater.log import setup_logging

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r'''
import logging
from headwater.log import setup_logging

setup_logging()
log = logging.getLogger("headwater.test")
log.info('a "quoted" word, a backslash \\ and a tab\there')
log.warning("line one\nline two\r\nline three")
log.info("unicode: caf\u00e9 \u2014 \u65e5\u672c \U0001f4c8")
log.info("redis at redis://:s3cret-pw@127.0.0.1:6379/0 with apiKey=abc\\\"def")
try:
    raise ValueError('bad "value"\nsecond line')
except ValueError:
    log.exception("it failed: %s", "details")
'''


def _lines(env_extra: dict[str, str]) -> list[bytes]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, timeout=60, check=True)
    return out.stderr.splitlines()


def test_every_json_line_parses_with_the_fields_and_the_exception():
    lines = _lines({"HEADWATER_LOG_JSON": "1", "HEADWATER_LOG_LEVEL": "INFO"})
    assert len(lines) == 5, lines  # one line per record: newlines in messages are escaped
    records = [orjson.loads(line) for line in lines]
    for rec in records:
        assert {"timestamp", "level", "logger", "message"} <= set(rec), rec
        assert rec["logger"] == "headwater.test"
        assert datetime.fromisoformat(rec["timestamp"]).tzinfo is not None  # ISO 8601, UTC
    quoted, multi, uni, secret, failed = records
    assert quoted["message"] == 'a "quoted" word, a backslash \\ and a tab\there' and quoted["level"] == "INFO"
    assert multi["message"] == "line one\nline two\r\nline three" and multi["level"] == "WARNING"
    assert uni["message"] == "unicode: café — 日本 📈"
    assert "s3cret-pw" not in secret["message"] and "abc" not in secret["message"]
    assert secret["message"].startswith("redis at redis://:***@127.0.0.1:6379/0 with apiKey=***")
    assert failed["level"] == "ERROR" and failed["message"] == "it failed: details"
    assert 'ValueError: bad "value"\nsecond line' in failed["exc_info"] and "Traceback" in failed["exc_info"]
    assert "exc_info" not in quoted


def test_plain_lines_are_unchanged_without_the_switch():
    lines = _lines({"HEADWATER_LOG_JSON": ""})
    assert b"INFO    headwater.test: a \"quoted\" word" in lines[0]
    assert not lines[0].startswith(b"{")


def test_setup_logging_in_process_redacts_exception_text(capsys: pytest.CaptureFixture[str]):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", json_format=True)
        try:
            raise RuntimeError("connect to redis://:hunter2@host:1/0 failed")
        except RuntimeError:
            logging.getLogger("headwater.test").exception("boom")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    rec = orjson.loads(line)
    assert "hunter2" not in line and "redis://:***@host:1/0" in rec["exc_info"]
