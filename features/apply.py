"""``python -m features.apply [--dry-run]``: apply ``features/definitions.py`` with the real Featureform CLI.

* ``FEATUREFORM_HOST`` (or ``--host``) set and no ``--dry-run``: runs ``featureform apply
  features/definitions.py --host HOST --no-wait [--insecure] [--cert P]`` -- this needs a running Featureform
  server (Docker image ``featureformcom/featureform``; none can run on these machines). ``--no-wait`` because
  featureform 1.15.8's status polling asks for streaming features with a ``NameVariant`` where the API takes a
  ``NameVariantRequest``; check the statuses in the dashboard instead.
* otherwise: validates the definitions -- Headwater's checks (pinned variants, a computation for every
  stored feature, on-demand inputs that exist) and then ``featureform apply --dry-run``, which executes the
  module and resolves every resource without connecting anywhere. Secrets are masked in the dry run's
  output (the SDK prints provider configs, passwords included).

The Redis the server should use comes from ``FEATUREFORM_REDIS_URL``, else the pipeline's own Redis
(``REDIS_URL`` / the embedded stack); a server in Docker usually needs ``FEATUREFORM_REDIS_URL`` with a host
it can reach. Exit code: 0 on success, 1 on failed validation or a failed apply.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from features import Catalog, FeatureSpec, UnknownFeatureError, load_catalog
from headwater.log import redact

DEFINITIONS = Path(__file__).with_name("definitions.py")
DRY_RUN_HOST = "localhost:7878"  # never contacted: the SDK's dry run only needs some host value
_SECRET_ENV = ("FEATUREFORM_REDIS_URL", "HEADWATER_REDIS_URL", "REDIS_URL",
               "HEADWATER_BLOB_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING")  # fmt: skip


def validate(catalog: Catalog, run_name: str) -> list[str]:
    """Problems in the registered definitions that the Featureform SDK does not check."""
    problems = []
    for spec in catalog.features.values():
        where = f"{spec.name}:{spec.variant}"
        if spec.variant == run_name:
            problems.append(f"{where}: variant not pinned (it is the run name {run_name!r})")
        if spec.stored and spec.entity not in catalog.entities:
            problems.append(f"{where}: entity {spec.entity!r} is not registered")
        if spec.stored:
            problems += [f"{where}: {p}" for p in _computation_problems(spec)]
        for ref in filter(None, spec.properties.get("inputs", "").split(",")):
            try:
                catalog.resolve(tuple(ref.split(":", 1)) if ":" in ref else ref)
            except UnknownFeatureError as exc:
                problems.append(f"{where}: input {exc}")
    return problems


def _computation_problems(spec: FeatureSpec) -> list[str]:
    """Why the feature engineer could not compute a stored feature (empty if it can)."""
    from features import market, sentiment

    jobs = {"market": market.JOBS, "sentiment": sentiment.JOBS}
    computation = spec.properties.get("computation")
    if spec.group in jobs:
        return [] if computation in jobs[spec.group] else [f"no computation {computation!r} in features.{spec.group}"]
    if spec.group == "documents":
        return [] if spec.properties.get("source") in ("sec", "transcript") else ["documents need source=sec|transcript"]
    return [f"no computation group {spec.group!r}"]


def child_env(dry_run: bool) -> dict[str, str]:
    """The CLI's environment: the pipeline's Redis as FEATUREFORM_REDIS_URL if unset; secrets masked in a dry run."""
    env = dict(os.environ)
    if not env.get("FEATUREFORM_REDIS_URL") and not env.get("HEADWATER_REDIS_URL") and not env.get("REDIS_URL"):
        from headwater.settings import NotConfiguredError
        from headwater.storage.redis import resolve_redis_url

        try:
            env["FEATUREFORM_REDIS_URL"] = resolve_redis_url()
        except NotConfiguredError:
            pass  # no Redis configured or running: the definitions fall back to localhost:6379
    if dry_run:
        for name in _SECRET_ENV:
            if env.get(name):
                env[name] = redact(env[name])
    return env


def featureform_command(host: str, *, dry_run: bool, insecure: bool, cert: str | None) -> list[str]:
    """The ``featureform apply`` command line."""
    cmd = [sys.executable, "-m", "featureform", "apply", str(DEFINITIONS), "--host", host]
    if dry_run:
        cmd.append("--dry-run")
    else:
        cmd.append("--no-wait")
    if insecure:
        cmd.append("--insecure")
    if cert:
        cmd += ["--cert", cert]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m features.apply", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="validate only (the default without FEATUREFORM_HOST)")
    parser.add_argument("--host", default=None, help="Featureform API host:port (default $FEATUREFORM_HOST)")
    parser.add_argument("--insecure", action="store_true", help="plain-text gRPC (no TLS)")
    parser.add_argument("--cert", default=None, help="self-signed certificate of the server")
    args = parser.parse_args(argv)
    host = args.host or os.environ.get("FEATUREFORM_HOST")
    dry_run = args.dry_run or not host

    import featureform as ff

    catalog = load_catalog()
    problems = validate(catalog, ff.get_run())
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    if problems:
        return 1
    if dry_run and not args.dry_run:
        print("FEATUREFORM_HOST is not set: validating the definitions only (--dry-run)", file=sys.stderr)
    cmd = featureform_command(host or DRY_RUN_HOST, dry_run=dry_run, insecure=args.insecure, cert=args.cert)
    result = subprocess.run(cmd, env=child_env(dry_run), check=False)
    if result.returncode == 0:
        kinds = sorted({spec.kind for spec in catalog.features.values()})
        verb = "validated" if dry_run else f"applied to {host}"
        print(f"{verb}: {len(catalog.features)} feature variants ({', '.join(kinds)}), "
              f"entities {sorted(catalog.entities)}", file=sys.stderr)  # fmt: skip
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
