"""``python -m flows.deploy``: the work pool, the global concurrency limits, then ``prefect deploy --all``.

Against the Prefect API in ``$PREFECT_API_URL`` (e.g. ``eval "$(python -m devstack env)"`` for the
embedded server):

1. creates the process work pool ``headwater-local`` (the one ``prefect.yaml`` names) if it does not exist;
2. creates or updates one Prefect global concurrency limit per provider quota in ``config/data_sources.yaml``,
   ``headwater-<provider>``, as a rate limit: ``limit`` = requests per minute (or per second) and
   ``slot_decay_per_second`` = that rate, so ``prefect.concurrency.sync.rate_limit("headwater-alphavantage")``
   paces callers and the UI shows the quotas. Enforcement is the Redis ``SharedRateLimiter`` every client uses
   (``flows/context.py``): it is per provider *and* API key, also counts the daily budgets Prefect limits cannot
   express, and is shared with the real-time streamer, which does not run under Prefect;
3. runs ``prefect --no-prompt deploy --all`` from the repository root. If a deployment's entrypoint file is
   missing (a flow not written yet), the others are deployed by name and the missing ones are reported
   (``--strict`` makes that an error).

The deployments' pull step changes into ``$HEADWATER_REPO``; ``prefect deploy`` fills it in from the deploying
environment (default here: this checkout), so a local worker needs nothing more than
``prefect worker start --pool headwater-local``. For an image, deploy with ``HEADWATER_REPO=/opt/headwater``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO_ROOT / "prefect.yaml"
WORK_POOL = "headwater-local"

log = logging.getLogger("headwater.flows.deploy")


def ensure_work_pool(name: str = WORK_POOL) -> bool:
    """Create the process work pool if missing; True if it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()))  # fmt: skip
        except ObjectAlreadyExists:
            return False
    log.info("created work pool %s (process)", name)
    return True


def rate_limits(data_sources: str | None = None) -> dict[str, tuple[int, float]]:
    """``{"headwater-<provider>": (limit, slot_decay_per_second)}`` for every provider with a rate quota."""
    from headwater.config import load_data_sources

    limits: dict[str, tuple[int, float]] = {}
    for provider, spec in load_data_sources(data_sources).items():
        quota = spec.get("quota") or {}
        if quota.get("per_minute"):
            limits[f"headwater-{provider}"] = (int(quota["per_minute"]), float(quota["per_minute"]) / 60.0)
        elif quota.get("per_second"):
            limits[f"headwater-{provider}"] = (max(1, int(quota["per_second"])), float(quota["per_second"]))
    return limits


def ensure_rate_limits(data_sources: str | None = None) -> list[str]:
    """Create or update the global concurrency limits of ``rate_limits``; returns their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    wanted = rate_limits(data_sources)
    with get_client(sync_client=True) as client:
        for name, (limit, decay) in wanted.items():
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay, active=True))
            else:
                client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(limit=limit, slot_decay_per_second=decay, active=True))
    log.info("global concurrency limits: %s", ", ".join(f"{n}={l}@{d:.2f}/s" for n, (l, d) in wanted.items()))
    return list(wanted)


def deployments(prefect_file: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    return list(yaml.safe_load(prefect_file.read_text()).get("deployments") or [])


def deploy_command(prefect_file: Path = PREFECT_FILE) -> tuple[list[str], list[str]]:
    """The ``prefect deploy`` command line, and the deployments left out because their entrypoint is missing."""
    script = Path(sys.executable).with_name("prefect")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]
    present, missing = [], []
    for d in deployments(prefect_file):
        path = d["entrypoint"].split(":", 1)[0]
        (present if (prefect_file.parent / path).exists() else missing).append(d["name"])
    if not missing:
        return [*base, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)], []
    names = [arg for name in present for arg in ("--name", name)]
    return [*base, "--no-prompt", "deploy", *names, "--prefect-file", str(prefect_file)], missing


def deploy(*, strict: bool = False, data_sources: str | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """Work pool, limits, then ``prefect deploy``; raises ``RuntimeError`` with Prefect's output on failure."""
    if not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError("PREFECT_API_URL is not set: point it at the Prefect server to deploy to "
                           "(e.g. eval \"$(python -m devstack env)\")")  # fmt: skip
    ensure_work_pool()
    ensure_rate_limits(data_sources)
    command, missing = deploy_command()
    if missing:
        message = f"entrypoints missing for {', '.join(missing)}; deploying the others"
        if strict:
            raise RuntimeError(message)
        log.warning(message)
    env = {**os.environ, "PREFECT_CLI_PROMPT": "false"}
    env.setdefault("HEADWATER_REPO", str(REPO_ROOT))  # where workers find the code (filled into the pull step)
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[-4:])}` failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="fail if an entrypoint file is missing")
    parser.add_argument("--data-sources", default=None, help="quota file (default config/data_sources.yaml)")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        done = deploy(strict=args.strict, data_sources=args.data_sources)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    print(done.stdout[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
