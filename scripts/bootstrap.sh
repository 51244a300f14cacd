#!/usr/bin/env bash
# Creates/updates the project environment in .venv/ (Python 3.11) and the Azurite install in node_modules/.
# Quick when nothing changed: a stamp keyed on the requirement files' hash short-circuits the install.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${HEADWATER_PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- Python environment ----------------------------------------------------------------------------
want=$(stamp_of requirements.txt requirements-overrides.txt pyproject.toml scripts/bootstrap.sh)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.headwater-stamp 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing Python environment into .venv/ (first run takes a few minutes)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check 'uv==0.13.9'
  # torch: the CPU build. pip finds a local wheel through PIP_FIND_LINKS on these machines; uv ignores pip's
  # settings, so hand it the same folders (otherwise it would fetch the multi-GB CUDA build).
  find_links=()
  for d in ${PIP_FIND_LINKS:-} ${UV_FIND_LINKS:-}; do [ -e "$d" ] && find_links+=(--find-links "$d"); done
  if [ ${#find_links[@]} -eq 0 ]; then
    find_links+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
  fi
  .venv/bin/uv pip install --python .venv/bin/python "${find_links[@]}" \
      --override requirements-overrides.txt -r requirements.txt
  # The project itself, editable and without dependencies (they are the pinned set above): the `headwater`
  # command, and every package importable from anywhere (no sys.path tricks in scripts and benchmarks).
  .venv/bin/uv pip install --python .venv/bin/python --no-deps -e .
  # The dataclasses backport must never land in site-packages (it breaks Prefect's API server).
  if ls .venv/lib/python3*/site-packages/dataclasses.py >/dev/null 2>&1; then
    echo "[bootstrap] ERROR: dataclasses.py backport found in site-packages" >&2; exit 1
  fi
  echo "$want" > .venv/.headwater-stamp
else
  echo "[bootstrap] .venv up to date"
fi

# --- Azurite (npm, pinned in package.json / package-lock.json) -------------------------------------
want_npm=$(stamp_of package.json)
if [ ! -x node_modules/.bin/azurite-blob ] || [ "$(cat node_modules/.headwater-stamp 2>/dev/null)" != "$want_npm" ]; then
  command -v npm >/dev/null 2>&1 || { echo "[bootstrap] ERROR: npm (Node.js 18+) is required for Azurite" >&2; exit 1; }
  echo "[bootstrap] installing Azurite with npm"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
  echo "$want_npm" > node_modules/.headwater-stamp
else
  echo "[bootstrap] Azurite up to date"
fi

# --- OpenSSL 1.1 for the Redis Stack binaries (fetched from Debian bullseye when the system lacks it) --
.venv/bin/python -m devstack ensure-libs
