"""``python -m streamer``: the real-time market-data path.

  python -m streamer stream   [--tickers-file F] [--connections N] [--wildcard] [--duration S]
  python -m streamer process  [--workers N] [--duration S]
  python -m streamer status   [--json]

With no Polygon key the streamer talks to the local WebSocket stand-in (simulated mode); set
POLYGON_API_KEY (or HEADWATER_POLYGON_API_KEY) for the real feed. Redis is REDIS_URL or the embedded
Redis Stack started by ``python -m devstack up``.

Exit codes of ``stream``: 0 stopped (Ctrl-C, SIGTERM, --duration), 3 the key was rejected (auth_failed),
4 gave up after HEADWATER_POLYGON_MAX_RECONNECTS failed reconnects in a row (or a protocol error),
5 max_connections: the key's connection limit is taken (another streamer on the same key?). None of them
is retried by the streamer itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from headwater.config import load_tickers
from headwater.log import setup_logging
from headwater.providers.polygon import PolygonAuthError, PolygonGaveUp, PolygonMaxConnections, PolygonProtocolError

log = logging.getLogger("headwater.streamer")
EXIT_MAX_CONNECTIONS = 5


def _stream(args: argparse.Namespace) -> int:
    if args.connections:
        os.environ["HEADWATER_POLYGON_CONNECTIONS"] = str(args.connections)
    if args.wildcard:
        os.environ["HEADWATER_POLYGON_WILDCARD"] = "true"
    from headwater.settings import Settings
    from streamer.app import Streamer

    streamer = Streamer(Settings(), load_tickers(args.tickers_file))
    try:
        asyncio.run(streamer.run(duration_s=args.duration))
    except PolygonAuthError as exc:
        log.error("%s — check POLYGON_API_KEY; not retrying", exc)
        return 3
    except PolygonMaxConnections as exc:
        log.error(
            "%s — the key's connection limit is taken (another streamer on this key, or HEADWATER_POLYGON_CONNECTIONS "
            "above the plan's limit); stop the other one or raise the limit; exiting with code %d", exc, EXIT_MAX_CONNECTIONS,
        )  # fmt: skip
        return EXIT_MAX_CONNECTIONS
    except (PolygonGaveUp, PolygonProtocolError) as exc:
        log.error("%s", exc)
        return 4
    except KeyboardInterrupt:
        pass
    totals = streamer.totals()
    print("streamed " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in totals.items()), flush=True)
    return 0


def _process(args: argparse.Namespace) -> int:
    from streamer.workers import run_pool, run_worker

    if args.workers == 1:
        run_worker(max_seconds=args.duration)
        return 0
    return run_pool(args.workers, max_seconds=args.duration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("stream", help="run the WebSocket streamer (default)")
    s.add_argument("--tickers-file", default=None, help="one ticker per line (default config/tickers.txt)")
    s.add_argument("--connections", type=int, default=None, help="WebSocket connections, each owning a slice of tickers")
    s.add_argument("--wildcard", action="store_true", help="subscribe T.*/Q.*/AM.* instead of the ticker list")
    s.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: run until Ctrl-C)")
    p = sub.add_parser("process", help="run stream-processor workers (consumer group processing_group)")
    p.add_argument("--workers", type=int, default=int(os.environ.get("HEADWATER_WORKERS", "2")), help="worker processes (default 2)")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: run until SIGTERM)")
    st = sub.add_parser("status", help="stream lengths, pending, lag, dead letters, last tick age")
    st.add_argument("--json", action="store_true")
    args, rest = parser.parse_known_args(argv)
    setup_logging()
    if args.command == "status":
        from headwater.status import main as status_main

        return status_main((["--json"] if args.json else []) + rest)
    if args.command == "process":
        return _process(args)
    if args.command is None:
        args = parser.parse_args(["stream", *rest])
    return _stream(args)


if __name__ == "__main__":
    sys.exit(main())
