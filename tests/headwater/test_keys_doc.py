"""docs/redis-keys.md names only settings, key formats, types and retentions the code and config have.

The spec is read as a reader would: its tables (key, type, retention columns) and every ``HEADWATER_*``
setting it names. Each key format is turned into a sample key (placeholders filled in) and parsed by
``headwater.keys``; its documented type must be the family's ``KEY_TYPES``, a documented retention the one
``config/retention.yaml`` gives the family's kind, and a named setting a field of a pydantic Settings class.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

import headwater.settings  # noqa: F401 - loads every Settings class of the core
from headwater import retention
from headwater.keys import AGG_FIELDS, BAR_FIELDS, FAMILIES, KEY_TYPES, TICK_FIELDS, Keys
from headwater.timeframes import TIMEFRAMES

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "redis-keys.md"

#: Placeholders whose braces are Redis Cluster hash tags (kept in the key), as the spec says.
HASH_TAGS = {"TICKER": "BRK.B", "P": "3", "PROVIDER:KEYID": "sec:0123456789ab"}
#: Other placeholders (braces dropped): a sample value each.
SAMPLES = {
    "TF": "1m", "FIELD": "close", "SOURCE": "polygon", "ID": "9f2c", "PLATFORM": "reddit", "POST_ID": "t3_x",
    "DATASET": "news", "DOC_ID": "sec:0000320193-24-000123", "N": "7", "HASH": "ab12", "C": "0",
    "CONSUMER": "host-1", "YYYYMMDD": "20240101", "JOB": "backfill", "ITEM": "AAPL",
    "KIND": "sentiment", "KEY_ID": "0123456789ab", "OWNER": "alice",
}  # fmt: skip
#: The spec's words for Redis types -> ``TYPE`` names (``KEY_TYPES``); "any" is the replay namespace.
TYPE_WORDS = {"hash": "hash", "sorted set": "zset", "set": "set", "string": "string", "counter": "string",
              "stream": "stream", "RediSearch index": "index", "RedisJSON": "ReJSON-RL"}  # fmt: skip
#: Sections whose tables have no type column: the type is the section's.
SECTION_TYPES = {"Streams": ("stream",), "Time series": ("TSDB-TYPE",)}
#: The values a placeholder takes in a family, where the spec lists them (`TF` ∈ `1m 5m 1h 1d`).
VALUES = {("bar", "TF"): tuple(TIMEFRAMES), ("bar", "FIELD"): BAR_FIELDS, ("provider_bar", "FIELD"): AGG_FIELDS,
          ("tick", "FIELD"): TICK_FIELDS}  # fmt: skip
#: Sections about keys not built by headwater/keys.py (Featureform's layout: features/online_store.py).
FOREIGN_SECTIONS = ("Features",)


def setting_names() -> set[str]:
    """Every environment name a pydantic Settings class reads (prefix + field, and validation aliases)."""

    def subclasses(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    names: set[str] = set()
    for cls in subclasses(BaseSettings):
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, info in cls.model_fields.items():  # type: ignore[attr-defined]
            names.add(f"{prefix}{name}".upper())
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names |= {c.upper() for c in alias.choices if isinstance(c, str)}
            elif isinstance(alias, str):
                names.add(alias.upper())
    return names


def tables(doc: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(section heading, row as {column: cell}) of every Markdown table."""
    section, header = "", None
    for line in doc.splitlines():
        if line.startswith("#"):
            section, header = line.lstrip("#").strip(), None
        elif not line.startswith("|"):
            header = None
        else:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = [c.lower() for c in cells]
            elif not all(set(c) <= set("-: ") for c in cells):
                yield section, dict(zip(header, cells))


def sample_key(pattern: str) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in HASH_TAGS:
            return "{" + HASH_TAGS[name] + "}"
        if name in SAMPLES:
            return SAMPLES[name]
        raise KeyError(name)

    return re.sub(r"\{([A-Z0-9_:]+)\}", fill, pattern)


def documented_types(cell: str) -> set[str] | None:
    words = re.sub(r"\(.*?\)", "", cell).strip()
    if words == "any":
        return None
    return {TYPE_WORDS[w.strip()] for w in words.split("/")}  # KeyError: a type the code does not have


def problems(doc: str) -> tuple[list[str], set[str]]:
    """What the spec names that the code/config do not have, and the key families it documents."""
    found: list[str] = []
    documented: set[str] = set()
    known = setting_names()
    for name in sorted(set(re.findall(r"\bHEADWATER_[A-Z0-9_]+\b", doc))):
        if name not in known:
            found.append(f"setting {name} does not exist")
    policy = retention.load_policy()
    keys = Keys()
    for section, row in tables(doc):
        if "key" not in row or section.startswith(FOREIGN_SECTIONS):
            continue
        previous = ""
        for pattern in re.findall(r"`([^`]+)`", row["key"]):
            if pattern.startswith(":") and previous:  # `ts:{TICKER}:bid`, `:ask` ...
                pattern = previous.rsplit(":", 1)[0] + pattern
            previous = pattern
            try:
                parsed = keys.parse(sample_key(pattern))
            except KeyError as exc:
                found.append(f"{pattern}: unknown placeholder {exc}")
                continue
            if parsed is None:
                found.append(f"{pattern}: no key family of headwater/keys.py builds it")
                continue
            if parsed.family == "replay":
                continue
            documented.add(parsed.family)
            wanted = set(KEY_TYPES[parsed.family])
            try:
                types = documented_types(row["type"]) if "type" in row else set(SECTION_TYPES.get(section.split(" (")[0], ()))
            except KeyError as exc:
                found.append(f"{pattern}: type {exc} is not a Redis type of the schema")
                continue
            if types is not None and types != wanted:
                found.append(f"{pattern}: documented as {sorted(types)}, keys.py says {sorted(wanted)}")
            for name, listed in re.findall(r"`([A-Z_]+)` ∈ `([^`]+)`", " ".join(row.values())):
                values = VALUES.get((parsed.family, name))
                if values is not None and listed.split() != list(values):
                    found.append(f"{pattern}: {name} ∈ {listed}, the code has {' '.join(values)}")
            kind = retention.KIND_OF_FAMILY.get(parsed.family)
            cell = row.get("retention", "")
            for word in re.findall(rf"\b({'|'.join(retention.KINDS)})\b", cell):
                if word != kind:
                    found.append(f"{pattern}: retention of kind {word}, config/retention.yaml applies {kind}")
            for days in re.findall(r"(\d+(?:\.\d+)?) days?\b", cell):
                allowed = {policy.kind(kind).days, policy.expiry_days(kind)} if kind else set()
                if float(days) not in allowed:
                    found.append(f"{pattern}: {days} days, config/retention.yaml says {sorted(allowed)} ({kind})")
    return found, documented


def test_the_spec_names_only_settings_types_and_retentions_that_exist() -> None:
    found, _ = problems(DOC_PATH.read_text())
    assert found == []


def test_every_key_family_is_in_the_spec() -> None:
    _, documented = problems(DOC_PATH.read_text())
    assert sorted(set(FAMILIES) - documented) == []


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("| `ts:{TICKER}:bar:{TF}:{FIELD}` | bars | LAST | 1m/5m: 90 days; 1h/1d: 730 days |", "730 days"),
        ("| `ts:{TICKER}:price` | trades | LAST | ticks: 7 days (`HEADWATER_STREAM_TICK_RETENTION_DAYS`) |",
         "setting HEADWATER_STREAM_TICK_RETENTION_DAYS does not exist"),
        ("| `ts:{TICKER}:price` | trades | LAST | bars |", "retention of kind bars"),
        ("| `ts:{TICKER}:spread` | spreads | LAST | ticks |", "no key family"),
        ("| `ts:{TICKER}:bar:{TF}:{FIELD}` | `TF` ∈ `1m 5m 15m 1h 1d` | LAST | bars |", "TF ∈ 1m 5m 15m 1h 1d"),
    ],
)
def test_the_check_catches_wrong_time_series_rows(row: str, expected: str) -> None:
    doc = "## Time series (RedisTimeSeries)\n\n| key | samples | duplicate policy | retention |\n|---|---|---|---|\n" + row
    found, _ = problems(doc)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("| `news:idx:{TICKER}` | hash | ids |", "keys.py says ['zset']"),
        ("| `news:idx:{TICKER}` | list | ids |", "type 'list'"),
        ("| `news:idx:{T}` | sorted set | ids |", "unknown placeholder"),
    ],
)
def test_the_check_catches_wrong_types(row: str, expected: str) -> None:
    found, _ = problems("## News\n\n| key | type | contents |\n|---|---|---|\n" + row)
    assert any(expected in p for p in found), found
