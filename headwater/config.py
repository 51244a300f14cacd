"""The files under ``config/``: the ticker universe, provider quotas and schedules."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from headwater.keys import check_ticker
from headwater.ratelimit import Limits

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def load_tickers(path: Path | str | None = None) -> list[str]:
    """Tickers from a one-per-line file ('#' comments), validated, de-duplicated, in file order."""
    path = Path(path) if path else CONFIG_DIR / "tickers.txt"
    seen: dict[str, None] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        symbol = line.split("#", 1)[0].strip().upper()
        if symbol:
            try:
                seen[check_ticker(symbol)] = None
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
    if not seen:
        raise ValueError(f"{path}: no tickers")
    return list(seen)


@lru_cache(maxsize=4)
def load_data_sources(path: str | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or CONFIG_DIR / "data_sources.yaml").read_text())["providers"]


def provider_limits(provider: str, path: str | None = None) -> Limits:
    """The shared quota of a provider as declared in data_sources.yaml."""
    quota = load_data_sources(path).get(provider, {}).get("quota", {})
    return Limits(per_second=quota.get("per_second"), per_minute=quota.get("per_minute"), per_day=quota.get("per_day"))


def load_schedules(path: str | None = None) -> dict[str, str]:
    return yaml.safe_load(Path(path or CONFIG_DIR / "schedules.yaml").read_text())
