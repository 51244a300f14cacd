"""``python -m standins``: every provider stand-in in one process, sharing one market simulator.

  python -m standins --http-port 8765 --ws-port 8766 [--tickers-file config/tickers.txt] [--rate 2000]

The WebSocket stand-in (Polygon stocks feed) and the REST stand-in (Polygon aggregates, Alpha Vantage,
NewsAPI, Reddit, X, SEC EDGAR, transcripts) share one ``MarketSim``, so bars fetched over REST for gap fill
equal the trades streamed. Prints one JSON line with every URL once both listen; SIGTERM stops it.

The WebSocket stand-in's fault injection is served next to the REST one's, under ``/_control/ws/``:
``POST drop`` ({"code": 1011}; null = abrupt TCP close), ``POST inject`` ({"text": "..."}: one raw frame to
every subscriber), ``POST pause`` ({"seconds": 5}), ``GET deliveries`` (per connection: tickers and the
event-time span sent, with the simulator's seed and density, for counting what a client must have stored).
``python -m devstack up`` runs this as the embedded "standins" service.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from headwater.config import load_tickers
from standins.http_server import ProviderStandIn
from standins.polygon_ws import PolygonStandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8765)
    parser.add_argument("--ws-port", type=int, default=8766)
    parser.add_argument("--tickers-file", default=None, help="universe (default config/tickers.txt)")
    parser.add_argument("--rate", type=float, default=2000.0, help="WebSocket T+Q events per second (default 2000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quotas", default=None, help='REST quotas as JSON, e.g. \'{"alphavantage": {"per_day": 25}}\'')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tickers = load_tickers(args.tickers_file)
    ws = PolygonStandIn(tickers=tickers, seed=args.seed, events_per_second=args.rate, host=args.host, port=args.ws_port)
    rest = ProviderStandIn(seed=args.seed, tickers=tickers, host=args.host, port=args.http_port, market=ws.sim,
                           quotas=json.loads(args.quotas) if args.quotas else None)
    _mount_ws_controls(rest, ws)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ws, rest:
        print(json.dumps({"http_url": rest.url, "ws_url": ws.url, **rest.base_urls()}), flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _mount_ws_controls(rest: ProviderStandIn, ws: PolygonStandIn) -> None:
    def pause(body: dict) -> dict:
        ws.pause(float(body.get("seconds", 5)))
        return {"paused_s": float(body.get("seconds", 5))}

    rest.add_control("POST", "ws/drop", lambda body: {"dropped": ws.drop_connections(body.get("code", 1011))})
    rest.add_control("POST", "ws/inject", lambda body: {"sent_to": ws.inject_raw(str(body["text"]))})
    rest.add_control("POST", "ws/pause", pause)
    rest.add_control("GET", "ws/deliveries", lambda _query: {
        "seed": ws.seed, "trades_per_minute": ws.trades_per_minute, "tickers": list(ws.tickers),
        "events_sent": ws.events_sent, "connections": ws.deliveries(),
    })  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
