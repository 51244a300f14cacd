"""The core is a leaf: nothing in headwater/, streamer/, flows/, features/ or expectations/ uses devstack."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_PACKAGES = ("headwater", "streamer", "flows", "features", "expectations")


def test_importing_the_core_loads_no_devstack_module():
    modules = ("headwater.settings", "headwater.storage.redis", "headwater.storage.blob", "headwater.status",
               "expectations", "streamer.app")  # fmt: skip
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'devstack' or m.startswith('devstack.'))\n"
        "assert not loaded, loaded\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]


def test_no_core_module_imports_devstack():
    offenders = []
    for package in CORE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                if any(n == "devstack" or n.startswith("devstack.") for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_services_module_left_the_core():
    assert importlib.util.find_spec("headwater.services") is None
    assert not (ROOT / "headwater" / "services.py").exists()
