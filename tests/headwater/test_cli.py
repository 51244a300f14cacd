"""The ``headwater`` console script (pyproject.toml): one command, each subcommand the owning module's ``main``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from headwater.cli import COMMANDS, resolve

ROOT = Path(__file__).resolve().parents[2]


def test_subcommands_resolve_to_existing_modules():
    import importlib.util

    assert {"status", "services", "streamer", "flows", "apply", "api", "mcp"} <= set(COMMANDS)
    for name, (module, _) in COMMANDS.items():
        assert importlib.util.find_spec(module) is not None, name
    assert resolve(["flows", "market-data-fetcher", "--ticker", "AAPL"]) == ("flows.market_data_fetcher", ["--ticker", "AAPL"])
    assert resolve(["flows"]) == ("flows.deploy", [])
    assert resolve(["processor", "news"]) == ("headwater.processors.news", [])
    assert resolve(["status", "--json"]) == ("headwater.status", ["--json"])
    for bad in (["nope"], ["processor"], ["flows", "../x"]):
        with pytest.raises(ValueError):
            resolve(bad)


def test_the_installed_command_runs():
    exe = shutil.which("headwater", path=str(Path(sys.executable).parent))
    assert exe, "the console script is installed by scripts/bootstrap.sh (pip install -e .)"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "mcp" in out.stdout and "services" in out.stdout
    out = subprocess.run([exe, "auth", "--help"], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0 and "issue" in out.stdout  # importable from any directory: the package is installed
    out = subprocess.run([exe, "bogus"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown command" in out.stderr
