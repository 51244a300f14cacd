"""``python -m devstack {up,down,status,env,ensure-libs}``: the development stack from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from typing import Any

from devstack.process import LOOPBACK, REPO_ROOT
from devstack.redis_stack import ensure_libs
from devstack.stack import down, resolve, status, up
from headwater.settings import ServiceUnavailableError

log = logging.getLogger("devstack")


def _print_status(report: dict[str, dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    for name, info in report.items():
        where = f"{LOOPBACK}:{info['port']}" if "port" in info else ""
        pid = f"pid {info['pid']}" if "pid" in info else ""
        health = "healthy" if info["healthy"] else ("unhealthy" if info["state"] != "stopped" else "")
        print(f"{name:<8} {info['state']:<8} {where:<16} {pid:<11} {health:<9} {info.get('url', '')}".rstrip())


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=(
            "Run Headwater's embedded services (Redis Stack, Azurite, Prefect server, provider stand-ins) as local "
            "processes. "
            f"State lives in $HEADWATER_HOME (default {REPO_ROOT / '.headwater'}); `up` writes the endpoints to "
            "$HEADWATER_HOME/services.env, where Headwater's settings find them. A service is skipped when "
            "its external configuration is set: REDIS_URL/HEADWATER_REDIS_URL, "
            "AZURE_STORAGE_CONNECTION_STRING/HEADWATER_BLOB_CONNECTION_STRING, PREFECT_API_URL."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,down,status,env,ensure-libs}")
    p_up = sub.add_parser("up", help="start the services that are not running (idempotent)")
    p_up.add_argument("--no-prefect", action="store_true", help="do not start a Prefect server")
    p_up.add_argument("--no-standins", action="store_true", help="do not start the provider stand-ins")
    p_up.add_argument("--json", action="store_true", help="print the resulting status as one JSON object")
    sub.add_parser("down", help="stop the services `up` started (data is kept)")
    p_status = sub.add_parser("status", help="show each service: running/stopped/external, port, pid, health")
    p_status.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser(
        "env",
        help='print `export NAME=value` lines for `eval "$(python -m devstack env)"`',
        description=(
            "Print shell `export` lines for REDIS_URL, AZURE_STORAGE_CONNECTION_STRING and (if a Prefect server "
            "is running or configured) PREFECT_API_URL. WARNING: the output contains the Redis password -- it "
            "is meant for `eval`, not for logs or screenshots."
        ),
    )
    sub.add_parser("ensure-libs", help="fetch OpenSSL 1.1 for the Redis Stack binaries if the system lacks it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.WARNING)  # azure-core logs every HTTP request at INFO
    try:
        if args.command == "up":
            up(prefect=not args.no_prefect, standins=not args.no_standins)
            _print_status(status(), args.json)
        elif args.command == "down":
            if not down():
                log.info("nothing to stop")
        elif args.command == "status":
            _print_status(status(), args.json)
        elif args.command == "env":
            endpoints = resolve()
            print(f"export REDIS_URL={shlex.quote(endpoints.redis_url)}")
            print(f"export AZURE_STORAGE_CONNECTION_STRING={shlex.quote(endpoints.blob_connection_string)}")
            if endpoints.prefect_api_url:
                print(f"export PREFECT_API_URL={shlex.quote(endpoints.prefect_api_url)}")
            if endpoints.standin_http_url:
                print(f"export HEADWATER_STANDIN_HTTP_URL={shlex.quote(endpoints.standin_http_url)}")
            if endpoints.standin_ws_url:
                print(f"export HEADWATER_STANDIN_WS_URL={shlex.quote(endpoints.standin_ws_url)}")
        elif args.command == "ensure-libs":
            lib_dir = ensure_libs()
            log.info("OpenSSL 1.1: %s", lib_dir or "provided by the system (nothing to do)")
    except ServiceUnavailableError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
