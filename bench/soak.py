"""Soak and chaos: the whole system, started as `make up` starts it, on the stand-ins, under a fault schedule.

    .venv/bin/python bench/soak.py --minutes 20 [--json]     (or: make soak MINUTES=20)
    .venv/bin/python bench/soak.py --short --json            (2-3 minutes, every fault kind once; tests/test_soak.py)

What it runs: ``scripts/run_all.py --restart`` (embedded Redis Stack, Azurite, Prefect server with the deployments,
the provider stand-ins streaming ~2,000 events/s, the streamer, the stream processors, the batch processors, the
Prefect worker, the metrics exporter and the feature API; a crashed process is restarted with back-off, as
Kubernetes restarts a pod's container), in a fresh ``$HEADWATER_HOME`` (temporary unless ``--home``), so it never
touches a running development stack. The soak's settings (printed in the JSON under ``settings``): tick retention
of a few minutes and raw streams capped at ``HEADWATER_STREAM_MAXLEN`` so Redis reaches a steady state,
``HEADWATER_POLYGON_MAX_RECONNECTS=3``, a 20 s EDGAR cool-off; the hourly/daily document flows' schedules are
paused (they would embed hundreds of filings on two cores) and run on demand with one ticker instead.

The fault schedule (after a quiet ``settle``; a quiet ``tail`` at the end lets everything catch up):

* ``ws_drop``: the WebSocket stand-in closes every connection (1011) every ``--drop-every`` seconds -- more
  drops per streamer incarnation than the reconnect budget;
* ``streamer_kill`` / ``processor_kill``: SIGKILL to the process group (what a node failure or an OOM kill does);
* ``redis_kill``: SIGKILL to Redis, restarted on the same data dir and port (AOF, appendfsync everysec);
* ``azurite_restart``: Azurite stopped and started on the same data dir and port;
* ``alphavantage_{429,5xx,timeout}``, ``newsapi_{429,5xx,timeout}``: bursts the next requests get (the every-minute
  market run, a news run started right after);
* ``edgar_block``: an SEC fair-access block hit by a filings run; a second run after the cool-off must succeed;
* ``bad_input``: a malformed frame / an invalid trade sent down the socket (the only dead letters allowed).

Invariants, counted against the deterministic simulator (``standins/market.py``) at the end (and in rolling
windows while it runs, because ticks expire): every trade millisecond the stand-in delivered is stored exactly
once (``lost``, ``duplicates``; what was never delivered, or was in the killed streamer's hands in the last second
before a SIGKILL, only counts in ``undelivered_or_in_flight``), every minute bar is present (``unfilled_minutes``: the socket's or the gap fill's),
dead letters are exactly the injected bad input, every flow run stored or quarantined its batch (or stopped on
the injected EDGAR block), every fault recovered, no process exited except by an injected kill, and RSS of every
long-running process and Redis memory grow less than ``--max-growth-mb-per-h`` after the warm-up
(least-squares slopes; judged when the schedule runs at least 7 minutes past the warm-up, always reported). Prints a progress line per fault on stderr and one JSON object at the end (``--json``);
the exit code is 1 when an invariant fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from _soak.counting import TradeCount, count_trades
from _soak.observe import MemorySampler, Supervisor, process_groups, wait_for
from headwater.keys import Keys
from standins.market import MINUTE_MS, MarketSim

ROOT = Path(__file__).resolve().parent.parent

PY = sys.executable
MAX_RECONNECTS = 3
TICK_RETENTION_MIN = 6
STREAM_MAXLEN = 10_000
EDGAR_COOLOFF_S = 20
SUPERVISED = ("streamer", "processors", "news-processor", "social-processor", "document-processor",
              "prefect-worker", "metrics", "feature-api")  # fmt: skip
EMBEDDED = ("redis", "azurite", "prefect", "standins")
FAULT_KINDS = ("streamer_kill", "bad_input", "alphavantage_429", "processor_kill", "newsapi_5xx", "alphavantage_5xx",
               "redis_kill", "newsapi_429", "azurite_restart", "alphavantage_timeout", "edgar_block",
               "newsapi_timeout")  # fmt: skip
NEWS_TICKERS = ["MSFT"]
PAUSED_DEPLOYMENTS = ("sec_filings_fetcher/sec-filings-fetcher", "earnings_transcripts_scraper/earnings-transcripts-scraper")
PIPELINE_FAULTS = ("ws_drop", "streamer_kill", "processor_kill", "redis_kill", "azurite_restart", "bad_input")
BAD_MARKER = "soak-bad-"
MEMORY_JUDGED_AFTER_S = 420  # memory slopes are an invariant only over at least this long after the warm-up
_SUMMARY = re.compile(r"^(\w+): ((?:\w+=\d+ ?)+)")


def _devstack() -> Any:
    """The embedded-services package (the one place that names it)."""
    import devstack

    return devstack


# -- clock and progress -------------------------------------------------------------------------------------
T0 = time.monotonic()


def now() -> float:
    return time.monotonic() - T0


def progress(message: str) -> None:
    print(f"[soak {now():7.1f}s] {message}", file=sys.stderr, flush=True)


# -- the system under test ----------------------------------------------------------------------------------
@dataclass
class System:
    home: Path
    env: dict[str, str]
    supervisor: Supervisor
    endpoints: Any
    standin: httpx.Client
    keys: Keys
    partitions: int
    handles: list[Any] = field(default_factory=list)  # Redis/Azurite restarted by the harness

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.endpoints.redis_url, socket_timeout=5, socket_connect_timeout=2)

    def embedded(self) -> dict[str, dict[str, Any]]:
        return _devstack().status()

    def pid_and_port(self, service: str) -> tuple[int, int]:
        """An embedded service's process and port: the harness's own restart of it, else the recorded one."""
        handle = next((h for h in self.handles if h.name == service), None)
        if handle is not None:
            return handle.pid, handle.port
        info = self.embedded()[service]
        return int(info["pid"]), int(info["port"])

    def ws_deliveries(self) -> dict[str, Any]:
        return self.standin.get("/_control/ws/deliveries").raise_for_status().json()

    def open_connections(self, since_wall: float = 0.0) -> int:
        conns = self.ws_deliveries()["connections"]
        return sum(1 for c in conns if c["closed_at"] is None and c["first_ms"] and c["connected_at"] >= since_wall)

    def inject(self, provider: str, mode: str, count: int = 1, **params: Any) -> None:
        body = {"provider": provider, "mode": mode, "count": count, **params}
        self.standin.post("/_control/faults", json=body).raise_for_status()

    def faults_pending(self, provider: str) -> int:
        queued = self.standin.get("/_control/faults").raise_for_status().json()["queued"]
        if isinstance(queued, dict):
            value = queued.get(provider, [])
            return len(value) if isinstance(value, list) else int(value)
        return sum(1 for q in queued if q.get("provider") == provider)

    def pipeline_caught_up(self, lag_limit: int = 500) -> bool:
        """Every partition's newest entry is fresh and its group has (almost) nothing left to process."""
        client = self.redis()
        try:
            now_ms = time.time() * 1000
            for p in range(self.partitions):
                stream = self.keys.raw_market_data(p)
                info = client.xinfo_stream(stream)
                last_ms = int(info["last-generated-id"].split(b"-")[0])
                if now_ms - last_ms > 5000:
                    return False
                groups = client.xinfo_groups(stream)
                if not groups or any((g.get("lag") or 0) > lag_limit for g in groups):
                    return False
            return True
        finally:
            client.close()

    def workers_alive(self) -> int:
        client = self.redis()
        try:
            return int(client.zcount(self.keys.workers_alive, time.time() * 1000 - 5000, "+inf"))
        finally:
            client.close()


def soak_environment(home: Path, minutes: float) -> dict[str, str]:
    """The supervisor's environment: the embedded stack in ``home``, nothing external, the soak's settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HEADWATER_", "PREFECT_")) and k not in ("REDIS_URL", "AZURE_STORAGE_CONNECTION_STRING")}  # fmt: skip
    policy = yaml.safe_load((ROOT / "config" / "retention.yaml").read_text())
    policy["hot"]["kinds"]["ticks"]["days"] = TICK_RETENTION_MIN / 1440
    retention = home / "retention.yaml"
    retention.write_text(yaml.safe_dump(policy))
    env.update(
        HEADWATER_HOME=str(home), HEADWATER_RETENTION_FILE=str(retention), HEADWATER_STREAM_MAXLEN=str(STREAM_MAXLEN),
        HEADWATER_POLYGON_CONNECTIONS="2", HEADWATER_POLYGON_MAX_RECONNECTS=str(MAX_RECONNECTS),
        HEADWATER_POLYGON_RECONNECT_MAX_S="2", HEADWATER_EDGAR_USER_AGENT="Headwater Soak soak@example.com",
        HEADWATER_EDGAR_BLOCK_COOLOFF_S=str(EDGAR_COOLOFF_S), HEADWATER_FLOW_RETRY_BASE_S="1",
        HEADWATER_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    return env


def start_system(home: Path, minutes: float) -> System:
    env = soak_environment(home, minutes)
    os.environ.update({k: env[k] for k in env if k.startswith("HEADWATER_")})
    for name in ("REDIS_URL", "HEADWATER_REDIS_URL", "AZURE_STORAGE_CONNECTION_STRING", "PREFECT_API_URL"):
        os.environ.pop(name, None)
    ports = [_devstack().free_port() for _ in range(2)]
    argv = [PY, "scripts/run_all.py", "--restart", "--restart-backoff", "1", "--metrics-port", str(ports[0]),
            "--api-port", str(ports[1]), "--grace", "20"]  # fmt: skip
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    supervisor = Supervisor(process, home / "supervisor.log", now)
    supervisor.start_reader()
    progress(f"starting the system (scripts/run_all.py --restart, HEADWATER_HOME={home}); log: {supervisor.log_path}")
    if not supervisor.running.wait(900) or process.poll() is not None:
        raise SystemExit(f"the supervisor did not start the system:\n{supervisor.last_lines()}")
    endpoints = _devstack().resolve()
    os.environ["PREFECT_API_URL"] = endpoints.prefect_api_url or ""
    from headwater.settings import Settings

    settings = Settings()
    system = System(home, env, supervisor, endpoints, httpx.Client(base_url=endpoints.standin_http_url, timeout=15),
                    Keys(settings.redis.key_prefix), settings.streams.partitions)  # fmt: skip
    if not wait_for(lambda: system.open_connections() >= 2 and system.workers_alive() >= 2
                    and system.pipeline_caught_up(), timeout=180):  # fmt: skip
        raise SystemExit(f"the pipeline did not start streaming:\n{supervisor.last_lines()}")
    progress(f"system up: {', '.join(sorted(supervisor.pids))}; streaming over 2 connections")
    return system


# -- Prefect ------------------------------------------------------------------------------------------------
def prefect_client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def pause_schedules() -> list[str]:
    paused = []
    with prefect_client() as client:
        for name in PAUSED_DEPLOYMENTS:
            try:
                client.pause_deployment(client.read_deployment_by_name(name).id)
                paused.append(name)
            except Exception as exc:  # noqa: BLE001 - reported: the run goes on with the schedule active
                progress(f"could not pause {name}: {exc}")
    return paused


def run_deployment(name: str, parameters: dict[str, Any]) -> str:
    from prefect.deployments import run_deployment as run

    return str(run(name=name, parameters=parameters, timeout=0).id)


@dataclass
class FlowRun:
    id: str
    flow: str
    state: str
    message: str
    start: float | None  # epoch seconds
    end: float | None
    counts: dict[str, int] | None
    text: str  # its log, joined


class FlowRuns:
    """Every flow run of the soak's (fresh) Prefect server, with the logs of finished ones (read once each)."""

    TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, tuple[str, dict[str, int] | None]] = {}
        self._cached: tuple[float, list[FlowRun]] = (0.0, [])

    def all(self, max_age_s: float = 5.0) -> list[FlowRun]:
        """The runs, read at most every ``max_age_s`` (every recovery watcher asks; the server is shared)."""
        with self._lock:
            if time.monotonic() - self._cached[0] > max_age_s:
                self._cached = (time.monotonic(), self._read())
            return self._cached[1]

    def _read(self) -> list[FlowRun]:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.client.schemas.sorting import LogSort

        with prefect_client() as client:
            flows = {str(f.id): f.name for f in client.read_flows(limit=200)}
            runs, offset = [], 0
            while True:
                page = client.read_flow_runs(limit=200, offset=offset)
                runs += page
                offset += len(page)
                if len(page) < 200:
                    break
            out = []
            for run in runs:
                state = run.state_type.value if run.state_type else "?"
                if run.start_time is None and state not in self.TERMINAL:
                    continue  # scheduled for later
                flow, rid = flows.get(str(run.flow_id), "?"), str(run.id)
                # Logs reach the API a little after the run ends: read them again until the summary is there
                # (for a minute after the end).
                ended_recently = run.end_time is not None and time.time() - run.end_time.timestamp() < 60
                if state in self.TERMINAL and (rid not in self._logs or (self._logs[rid][1] is None and ended_recently)):
                    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=200,
                                            sort=LogSort.TIMESTAMP_DESC)  # the summary is among the last lines
                    counts = None
                    for log in logs:
                        m = _SUMMARY.match(log.message)
                        if m and m[1] == flow:
                            counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[2])}
                    self._logs[rid] = ("\n".join(log.message for log in logs), counts)
                text, counts = self._logs.get(rid, ("", None))
                out.append(FlowRun(rid, flow, state, (run.state.message or "") if run.state else "",
                                   run.start_time.timestamp() if run.start_time else None,
                                   run.end_time.timestamp() if run.end_time else None, counts, text))  # fmt: skip
            return out

    def get(self, run_id: str) -> FlowRun | None:
        return next((r for r in self.all() if r.id == run_id), None)

    def settled(self) -> bool:
        return not any(r.state in ("RUNNING", "PENDING") for r in self.all(max_age_s=0))


class Trigger:
    """A flow run started on demand, from a recovery watcher (never blocking the schedule: a busy Prefect server
    can take minutes to answer); started again while the deployment's one-at-a-time limit cancels it."""

    def __init__(self, runs: FlowRuns, deployment: str, parameters: dict[str, Any]) -> None:
        self.runs, self.deployment, self.parameters = runs, deployment, parameters
        self.ids: list[str] = []

    def _start(self) -> bool:
        flow = self.deployment.split("/")[0]
        if any(r.flow == flow and r.state in ("RUNNING", "PENDING") for r in self.runs.all()):
            return False  # it would only be cancelled by the one-at-a-time limit: wait for that run to end
        try:
            self.ids.append(run_deployment(self.deployment, self.parameters))
        except Exception as exc:  # noqa: BLE001 - the API is busy: the watcher asks again
            progress(f"starting a {self.deployment} run failed ({type(exc).__name__}); retrying")
            return False
        return True

    def finished(self) -> FlowRun | None:
        """The run once it ended (not cancelled by the concurrency limit), else None; starts it first."""
        if not self.ids:
            self._start()
            return None
        run = self.runs.get(self.ids[-1])
        if run is None or run.state not in FlowRuns.TERMINAL:
            return None
        if run.state == "CANCELLED" and "concurrency" in run.message.lower() and len(self.ids) < 20:
            self._start()
            return None
        return run


def batch_accounted(run: FlowRun) -> str | None:
    """Why a completed run's counts do not add up, or None.

    fetched = validated + quarantined (+ duplicates already stored); bars: validated = stored (a re-fetched bar is
    rewritten, so ``already_present`` is part of ``stored``); news/posts: validated = published.
    """
    c = run.counts
    if c is None:
        return None if run.flow not in ("market_data_fetcher", "news_scraper", "social_media_collector") else "no summary line"
    fetched, validated, quarantined = c.get("fetched", 0), c.get("validated", 0), c.get("quarantined", 0)
    if fetched != validated + quarantined + c.get("duplicates", 0):
        return f"fetched {fetched} != validated {validated} + quarantined {quarantined} + duplicates {c.get('duplicates', 0)}"
    if run.flow == "market_data_fetcher" and validated != c.get("stored", 0):
        return f"validated {validated} != stored {c.get('stored', 0)}"
    if "published" in c and c["published"] != validated:
        return f"validated {validated} != published {c['published']}"
    return None


# -- faults -------------------------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    at: float  # harness clock
    wall: float
    detail: str = ""
    recovered_s: float | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Chaos:
    """Injects the faults and watches each one recover (a thread per fault polls its recovery condition)."""

    def __init__(self, system: System, recovery_timeout_s: float) -> None:
        self.system = system
        self.timeout = recovery_timeout_s
        self.faults: list[Fault] = []
        self.bad_inputs = 0  # dead letters to expect
        self.kills: list[tuple[str, float, float]] = []  # (service, harness clock, wall)
        self.runs = FlowRuns()
        self.blocked_triggers: list[Trigger] = []  # filings runs meant to hit the injected EDGAR block
        self.injection_failures: list[str] = []
        self._lock = threading.Lock()

    # each fault: inject, then a recovery condition polled in the background
    def inject(self, kind: str) -> None:
        fault = Fault(kind, now(), time.time())
        with self._lock:
            self.faults.append(fault)
        try:
            check = getattr(self, f"_{kind.rsplit('_', 1)[0] if kind.startswith(('alphavantage', 'newsapi')) else kind}")(fault)
        except Exception as exc:  # noqa: BLE001 - a fault that could not even be injected is reported
            fault.detail = f"injection failed: {exc!r}"
            fault.done.set()
            with self._lock:
                self.faults.remove(fault)
                self.injection_failures.append(f"{kind} at {fault.at:.0f}s: {exc!r}"[:300])
            progress(f"fault {kind}: {fault.detail}")
            return
        progress(f"fault {kind}: {fault.detail}")
        threading.Thread(target=self._watch, args=(fault, check), name=f"recover-{kind}", daemon=True).start()

    def _watch(self, fault: Fault, check: Any) -> None:
        if wait_for(check, self.timeout, every=0.5 if fault.kind in PIPELINE_FAULTS else 3.0):
            fault.recovered_s = round(now() - fault.at, 1)
            progress(f"recovered from {fault.kind} in {fault.recovered_s:.1f}s")
        else:
            progress(f"NOT recovered from {fault.kind} after {self.timeout:.0f}s")
        fault.done.set()

    def _streaming_again(self, since_wall: float, new_connections: bool) -> bool:
        s = self.system
        return s.open_connections(since_wall if new_connections else 0.0) >= 2 and s.pipeline_caught_up()

    def _ws_drop(self, fault: Fault) -> Any:
        dropped = self.system.standin.post("/_control/ws/drop", json={"code": 1011}).raise_for_status().json()["dropped"]
        fault.detail = f"closed {dropped} WebSocket connection(s) with 1011"
        return lambda: self._streaming_again(fault.wall, True)

    def _kill_group(self, service: str, fault: Fault) -> int:
        pid = self.system.supervisor.pid(service)
        if pid is None:
            raise RuntimeError(f"{service} is not running")
        os.killpg(pid, signal.SIGKILL)
        with self._lock:
            self.kills.append((service, fault.at, fault.wall))
        return pid

    def _streamer_kill(self, fault: Fault) -> Any:
        pid = self._kill_group("streamer", fault)
        fault.detail = f"SIGKILL to the streamer's process group (pid {pid})"
        return lambda: (self.system.supervisor.started_since("streamer", fault.at) is not None
                        and self._streaming_again(fault.wall, True))  # fmt: skip

    def _processor_kill(self, fault: Fault) -> Any:
        pid = self._kill_group("processors", fault)
        fault.detail = f"SIGKILL to the stream processors' process group (pid {pid}, 2 workers)"
        return lambda: (self.system.supervisor.started_since("processors", fault.at) is not None
                        and self.system.workers_alive() >= 2 and self._streaming_again(0.0, False))  # fmt: skip

    def _redis_kill(self, fault: Fault) -> Any:
        dev = _devstack()
        pid, port = self.system.pid_and_port("redis")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
                 timeout=10, every=0.05)  # fmt: skip
        started = time.monotonic()
        handle = dev.start_redis(self.system.home / "redis", port=port, password=dev.redis_password())
        self.system.handles = [h for h in self.system.handles if h.name != "redis"] + [handle]
        fault.detail = (f"SIGKILL to Redis (pid {pid}); restarted on the same data dir and port {port} in "
                        f"{time.monotonic() - started:.1f}s (pid {handle.pid})")  # fmt: skip
        return lambda: self._streaming_again(0.0, False) and self.system.workers_alive() >= 2

    def _azurite_restart(self, fault: Fault) -> Any:
        dev = _devstack()
        pid, port = self.system.pid_and_port("azurite")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5, every=0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5, every=0.05)
        handle = dev.start_azurite(self.system.home / "azurite", port=port)
        self.system.handles = [h for h in self.system.handles if h.name != "azurite"] + [handle]
        fault.detail = f"Azurite (pid {pid}) stopped and started again on port {port} (pid {handle.pid})"
        return lambda: _blob_round_trip(self.system.endpoints.blob_connection_string)

    def _alphavantage(self, fault: Fault) -> Any:
        return self._provider_burst("alphavantage", fault, trigger=None)

    def _newsapi(self, fault: Fault) -> Any:
        return self._provider_burst("newsapi", fault, trigger=("news_scraper/news-scraper", {"tickers": NEWS_TICKERS}))

    def _provider_burst(self, provider: str, fault: Fault, trigger: tuple[str, dict[str, Any]] | None) -> Any:
        mode = fault.kind.rsplit("_", 1)[1]
        # One burst at a time per provider: two bursts landing on one request's attempts would exceed its retry
        # budget (3 retries) by construction, which says nothing about the system.
        wait_for(lambda: not self.system.faults_pending(provider), timeout=90, every=1)
        if mode == "429":
            self.system.inject(provider, "http429", count=3, retry_after=1)
        elif mode == "5xx":
            self.system.inject(provider, "http503", count=2)
            self.system.inject(provider, "http500", count=1)
        else:
            self.system.inject(provider, "timeout", count=2, seconds=5)
        fault.detail = f"{provider}: the next 3 requests get {'a 5 s hold and no answer' if mode == 'timeout' else mode}"
        started = Trigger(self.runs, *trigger) if trigger is not None else None
        if trigger is not None:
            fault.detail += f"; started a {trigger[0]} run for {', '.join(trigger[1]['tickers'])}"
        flow = {"alphavantage": "market_data_fetcher", "newsapi": "news_scraper"}[provider]
        consumed: dict[str, float] = {}

        def recovered() -> bool:
            run = started.finished() if started is not None else None  # starts the run on the first call
            if "at" not in consumed:
                if self.system.faults_pending(provider):
                    return False
                consumed["at"] = time.time()
            if started is not None:
                return run is not None and run.state == "COMPLETED" and batch_accounted(run) is None
            runs = [r for r in self.runs.all() if r.flow == flow and r.end is not None and r.end >= consumed["at"]]
            return any(r.state == "COMPLETED" and batch_accounted(r) is None for r in runs)

        return recovered

    def _edgar_block(self, fault: Fault) -> Any:
        self.system.inject("sec", "block", count=1, seconds=EDGAR_COOLOFF_S / 2, path="company_tickers")
        params = {"tickers": ["AAPL"], "max_filings_per_ticker": 1, "refetch": True}
        deployment = "sec_filings_fetcher/sec-filings-fetcher"
        blocked = Trigger(self.runs, deployment, params)
        self.blocked_triggers.append(blocked)
        fault.detail = (f"SEC fair-access block ({EDGAR_COOLOFF_S / 2:.0f} s) on the next request; a filings run for "
                        f"AAPL hits it, another one after the {EDGAR_COOLOFF_S} s cool-off must store")  # fmt: skip
        second: dict[str, Trigger] = {}

        def recovered() -> bool:
            if "run" not in second:
                run = blocked.finished()
                if run is None or run.end is None or time.time() < run.end + EDGAR_COOLOFF_S + 2:
                    return False
                second["run"] = Trigger(self.runs, deployment, params)
            run = second["run"].finished()
            return run is not None and run.state == "COMPLETED"

        return recovered

    def _bad_input(self, fault: Fault) -> Any:
        n = sum(1 for f in self.faults if f.kind == "bad_input")
        invalid_trade = json.dumps([{"ev": "T", "sym": "AAPL", "i": f"{BAD_MARKER}{n}", "x": 4, "p": "not-a-price",
                                     "s": 10, "t": int(time.time() * 1000), "q": 1, "c": [0], "z": 3}])  # fmt: skip
        sent = [self.system.standin.post("/_control/ws/inject", json={"text": text}).raise_for_status().json()["sent_to"]
                for text in (f"{BAD_MARKER}{n}: not a JSON frame", invalid_trade)]  # fmt: skip
        with self._lock:
            self.bad_inputs += sum(sent)
        fault.detail = f"a malformed frame and an invalid trade, each sent to {sent[0]} connection(s)"
        expected = self.bad_inputs

        def recovered() -> bool:
            return dead_letters(self.system)[0] >= expected

        return recovered


def _blob_round_trip(connection_string: str) -> bool:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(connection_string, retry_total=0, connection_timeout=2) as client:
        container = client.get_container_client("soak-probe")
        if not container.exists():
            container.create_container()
        name = f"probe-{uuid.uuid4().hex[:8]}"
        container.upload_blob(name, b"soak", overwrite=True)
        ok = container.download_blob(name).readall() == b"soak"
        container.delete_blob(name)
        return ok


def dead_letters(system: System) -> tuple[int, list[str]]:
    """(injected bad inputs found, reasons of every other dead letter)."""
    client = system.redis()
    try:
        found, others = 0, []
        for _id, fields in client.xrange(system.keys.dead_letter, "-", "+"):
            raw = fields.get(b"raw", b"")
            if BAD_MARKER.encode() in raw:
                found += 1
            else:
                others.append(f"{fields.get(b'stage', b'?').decode()}: {fields.get(b'reason', b'?').decode()[:200]}")
        return found, others
    finally:
        client.close()


# -- the schedule -------------------------------------------------------------------------------------------
def schedule(total_s: float, settle_s: float, tail_s: float, drop_every_s: float) -> list[tuple[float, str]]:
    """(seconds after the start, fault kind), in time order: rounds of every kind, WebSocket drops in between."""
    window = max(total_s - settle_s - tail_s, 1.0)
    rounds = max(1, int(window // (len(FAULT_KINDS) * 25)))
    step = window / (rounds * len(FAULT_KINDS))
    events = [(settle_s + i * step, FAULT_KINDS[i % len(FAULT_KINDS)]) for i in range(rounds * len(FAULT_KINDS))]
    first_drop = settle_s + step * 1.5  # after the first streamer kill: the new incarnation sees every later drop
    drops = max(MAX_RECONNECTS + 2, int((total_s - tail_s - first_drop) // drop_every_s))
    spacing = (total_s - tail_s - first_drop) / drops
    events += [(first_drop + i * spacing, "ws_drop") for i in range(drops)]
    return sorted(events)


# -- counting -----------------------------------------------------------------------------------------------
class TradeVerifier:
    """Counts stored trades against the simulator in windows of event time, while the ticks still exist.

    A window is final once it counts clean or is ``final_after_s`` old (the pipeline had that long to catch up
    after a fault); its trades must be present where the stand-in delivered them (``deliveries``), except the last
    second before a streamer SIGKILL (in flight in the killed process: counted as ``unchecked_missing``, not lost).
    """

    def __init__(self, system: System, chaos: Chaos, start_ms: int, final_after_s: float = 150.0) -> None:
        self.system = system
        self.chaos = chaos
        self.final_after_s = final_after_s
        info = system.ws_deliveries()
        self.sim = MarketSim(seed=info["seed"], trades_per_minute=info["trades_per_minute"])
        self.tickers: list[str] = info["tickers"]
        self.next_start = start_ms
        self.pending: list[tuple[int, int]] = []
        self.total = TradeCount()
        self.windows = 0
        self.examples: list[str] = []  # lost or doubled trades, "TICKER HH:MM:SS.mmm"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def required_spans(self) -> dict[str, list[tuple[int, int]]]:
        conns = self.system.ws_deliveries()["connections"]
        kills = [wall for service, _, wall in self.chaos.kills if service == "streamer"]
        spans: dict[str, list[tuple[int, int]]] = {}
        for c in conns:
            if c["first_ms"] is None or c["last_ms"] is None:
                continue
            last = c["last_ms"]
            if c["closed_at"] is not None and any(k - 1 <= c["closed_at"] <= k + 10 for k in kills):
                last = min(last, int(min(k for k in kills if k - 1 <= c["closed_at"] <= k + 10) * 1000) - 1000)
            for t in c["tickers"]:
                spans.setdefault(t, []).append((c["first_ms"], last))
        return spans

    def start(self, every_s: float = 30.0) -> None:
        """Count in the background every ``every_s`` (ticks expire: counting cannot wait for the end)."""

        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.step()
                except Exception as exc:  # noqa: BLE001 - Redis or the stand-in mid-fault: next time
                    progress(f"trade count postponed: {type(exc).__name__}: {exc}")

        self._thread = threading.Thread(target=loop, name="soak-trades", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)

    def step(self, final: bool = False, settle_ms: int = 20_000) -> None:
        with self._lock:
            self._step(final, settle_ms)

    def _step(self, final: bool, settle_ms: int) -> None:
        horizon = int(time.time() * 1000) - settle_ms
        if horizon > self.next_start:
            self.pending.append((self.next_start, horizon))
            self.next_start = horizon + 1
        if not self.pending:
            return
        spans = self.required_spans()
        client = self.system.redis()
        try:
            keep = []
            for lo, hi in self.pending:
                count, examples = TradeCount(), []
                for t in self.tickers:
                    one = count_trades(client, self.system.keys, self.sim, t, lo, hi, spans.get(t, []))
                    count.add(one)
                    examples += [f"{t} {datetime.fromtimestamp(ms / 1000, UTC):%H:%M:%S.%f}"[:-3] for ms in one.examples[:2]]
                old = time.time() * 1000 - hi > self.final_after_s * 1000
                if final or old or (count.missing == 0 and count.duplicates == 0):
                    self.total.add(count)
                    self.windows += 1
                    self.examples += examples[: max(0, 20 - len(self.examples))]
                    if count.missing or count.duplicates:
                        progress(f"trades {datetime.fromtimestamp(lo / 1000, UTC):%H:%M:%S}-"
                                 f"{datetime.fromtimestamp(hi / 1000, UTC):%H:%M:%S}: {count.missing} lost, "
                                 f"{count.duplicates} duplicated of {count.checked}")  # fmt: skip
                else:
                    keep.append((lo, hi))
            self.pending = keep
        finally:
            client.close()


def unfilled_minutes(system: System, tickers: list[str], first_ms: int, last_ms: int) -> tuple[int, int, list[str]]:
    """(missing, checked, examples) of the minute bars ``ts:{T}:agg:polygon:1m:close`` in [first_ms, last_ms]."""
    client = system.redis()
    missing, checked, examples = 0, 0, []
    try:
        wanted = range((first_ms // MINUTE_MS + 1) * MINUTE_MS, (last_ms // MINUTE_MS) * MINUTE_MS + 1, MINUTE_MS)
        for t in tickers:
            key = system.keys.provider_bar(t, "polygon", "1m", "close")
            try:
                got = {int(ts) for ts, _ in client.execute_command("TS.RANGE", key, wanted.start, wanted.stop)}
            except redis.ResponseError:
                got = set()
            absent = [m for m in wanted if m not in got]
            missing += len(absent)
            checked += len(wanted)
            examples += [f"{t} {datetime.fromtimestamp(m / 1000, UTC):%H:%M}" for m in absent[:2]]
    finally:
        client.close()
    return missing, checked, examples[:10]


# -- the run ------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    total_s = args.minutes * 60
    settle_s, tail_s = (20.0, 40.0) if args.short else (60.0, 120.0)
    # Warm-up: the tick retention has filled, and the first round of faults is over (the document processor
    # loads its embedding model on the first filing; a restarted Redis starts from a compact AOF).
    round_s = (total_s - settle_s - tail_s) / max(1, int((total_s - settle_s - tail_s) // (len(FAULT_KINDS) * 25)))
    warmup_s = total_s * 0.4 if args.short else min(max(TICK_RETENTION_MIN * 60 + 60, settle_s + round_s + 120), total_s * 0.5)
    drop_every = args.drop_every or (20.0 if args.short else 45.0)
    home = Path(args.home).absolute() if args.home else Path(tempfile.mkdtemp(prefix="headwater-soak-"))
    home.mkdir(parents=True, exist_ok=True)
    system: System | None = None
    try:
        system = start_system(home, args.minutes)
        paused = pause_schedules()
        chaos = Chaos(system, recovery_timeout_s=300.0)
        sampler = MemorySampler(lambda: memory_groups(system), lambda: _redis_used_mb(system), now,
                                every_s=5.0 if args.short else 10.0)  # fmt: skip
        start_ms = int(time.time() * 1000)
        started_at = now()
        events_before = system.ws_deliveries()["events_sent"]
        sampler.start()
        verifier = TradeVerifier(system, chaos, start_ms)
        verifier.start()
        plan = schedule(total_s, settle_s, tail_s, drop_every)
        progress(f"soaking {args.minutes:g} min at ~2,000 events/s: {len(plan)} faults "
                 f"({', '.join(f'{k} x{n}' for k, n in Counter(k for _, k in plan).items())})")  # fmt: skip
        for at, kind in plan:
            while now() - started_at < at:
                time.sleep(min(0.5, max(0.0, at - (now() - started_at))))
                _supervisor_alive(system)
            chaos.inject(kind)
        while now() - started_at < total_s:
            time.sleep(0.5)
            _supervisor_alive(system)
        end_ms = int(time.time() * 1000)
        progress("schedule done; waiting for the last recoveries and for the pipeline to catch up")
        for fault in chaos.faults:
            fault.done.wait(max(0.0, chaos.timeout - (now() - fault.at)) + 1)
        wait_for(system.pipeline_caught_up, timeout=120)
        wait_for(chaos.runs.settled, timeout=120, every=5)
        time.sleep(5)
        sampler.stop()
        verifier.stop()
        verifier.step(final=True, settle_ms=5_000)
        first_ms = min((c["first_ms"] for c in system.ws_deliveries()["connections"] if c["first_ms"]), default=start_ms)
        missing_minutes, minutes_checked, missing_examples = unfilled_minutes(
            system, verifier.tickers, max(first_ms, start_ms), int(time.time() * 1000) - 90_000)
        found_bad, other_dead = dead_letters(system)
        runs = chaos.runs.all(max_age_s=0)
        growth, redis_growth, rss_last = sampler.growth(started_at + warmup_s, now())
        sampler.dump(home / "memory-samples.json", started_at)  # every incarnation's RSS curve, for a second look
        events_sent = system.ws_deliveries()["events_sent"] - events_before
        exits = unexpected_exits(system, chaos)
        report = build_report(args, system, chaos, verifier, runs, growth, redis_growth, rss_last, exits,
                              (missing_minutes, minutes_checked, missing_examples), found_bad, other_dead,
                              events_sent, now() - started_at, paused, warmup_s, total_s)  # fmt: skip
    finally:
        stop_system(system, home, keep=args.keep or bool(args.home))
    return report


def _supervisor_alive(system: System) -> None:
    if system.supervisor.process.poll() is not None:
        raise SystemExit(f"the supervisor exited ({system.supervisor.process.returncode}):\n{system.supervisor.last_lines()}")


def _redis_used_mb(system: System) -> float | None:
    client = system.redis()
    try:
        return int(client.info("memory")["used_memory"]) / 2**20
    finally:
        client.close()


def memory_groups(system: System) -> dict[str, int]:
    groups = {name: pid for name in SUPERVISED if (pid := system.supervisor.pid(name)) is not None}
    try:
        status = system.embedded()
    except Exception:  # noqa: BLE001 - a service mid-restart
        status = {}
    for name in EMBEDDED:
        pid = next((h.pid for h in system.handles if h.name == name), None) or status.get(name, {}).get("pid")
        if pid:
            groups[name] = int(pid)
    return groups


def unexpected_exits(system: System, chaos: Chaos) -> list[str]:
    """Supervised processes that exited without an injected kill just before (a kill explains one exit)."""
    kills = list(chaos.kills)
    out = []
    for e in system.supervisor.exits:
        match = next((k for k in kills if k[0] == e.service and k[1] - 1 <= e.at <= k[1] + 30), None)
        if match is not None and e.code == -signal.SIGKILL:
            kills.remove(match)
            continue
        out.append(f"{e.service} exited with code {e.code} at {e.at:.0f}s")
    status = system.embedded()
    for name in EMBEDDED:
        handle = next((h for h in system.handles if h.name == name), None)
        alive = handle.alive() if handle is not None else bool(status.get(name, {}).get("healthy"))
        if not alive:
            out.append(f"{name} is not running at the end ({status.get(name)})")
    return out


def build_report(args: argparse.Namespace, system: System, chaos: Chaos, verifier: TradeVerifier, runs: list[FlowRun],
                 growth: dict[str, float], redis_growth: float | None, rss_last: dict[str, float], exits: list[str],
                 minutes: tuple[int, int, list[str]], found_bad: int, other_dead: list[str], events_sent: int,
                 streamed_s: float, paused: list[str], warmup_s: float, total_s: float) -> dict[str, Any]:  # fmt: skip
    injected = Counter(f.kind for f in chaos.faults)
    recovered = Counter(f.kind for f in chaos.faults if f.recovered_s is not None)
    recovery_s = {k: max(f.recovered_s for f in chaos.faults if f.kind == k and f.recovered_s is not None)
                  for k in recovered}  # fmt: skip
    blocked_ids = {rid for trigger in chaos.blocked_triggers for rid in trigger.ids}
    failed_runs, unaccounted, cancelled, stopped_by_block = [], [], 0, 0
    for r in runs:
        if r.state == "COMPLETED":
            why = batch_accounted(r)
            if why:
                unaccounted.append(f"{r.flow} {r.id[:8]}: {why}")
        elif r.state == "CANCELLED":
            cancelled += 1
        elif r.state in ("FAILED", "CRASHED") and r.id in blocked_ids and "fair-access block" in (r.text + r.message):
            stopped_by_block += 1
        elif r.state in ("FAILED", "CRASHED"):
            why = r.message[r.message.find("failed="):] if "failed=" in r.message else r.message
            failed_runs.append(f"{r.flow} {r.id[:8]} {r.state}: {why[:300]}")
        elif r.state in ("RUNNING", "PENDING") and r.start is not None and time.time() - r.start > 300:
            failed_runs.append(f"{r.flow} {r.id[:8]} still {r.state} after {time.time() - r.start:.0f}s")
    limit = args.max_growth_mb_per_h
    expected_bad = chaos.bad_inputs
    missing_minutes, minutes_checked, missing_examples = minutes
    kinds = set(FAULT_KINDS) | {"ws_drop"}
    invariants = {
        "no_lost_trades": verifier.total.missing == 0,
        "no_duplicate_trades": verifier.total.duplicates == 0,
        "every_minute_bar": missing_minutes == 0,
        "every_fault_kind_injected": kinds <= set(injected) and not chaos.injection_failures,
        "ws_drops_exceed_reconnect_budget": injected["ws_drop"] > MAX_RECONNECTS,
        "every_fault_recovered": injected == recovered,
        "dead_letters_only_injected": not other_dead and found_bad == expected_bad,
        "flow_runs_stored_or_quarantined": not failed_runs and not unaccounted,
        "no_unexpected_exits": not exits,
    }
    judged = total_s - warmup_s >= MEMORY_JUDGED_AFTER_S
    if judged:  # a slope over a few minutes says nothing about days: the short run reports it, the long run judges
        invariants["rss_flat"] = bool(growth) and all(v <= limit for v in growth.values())
        invariants["redis_memory_flat"] = redis_growth is not None and redis_growth <= limit
    return {
        "minutes": args.minutes,
        "ok": all(invariants.values()),
        "invariants": invariants,
        "lost": verifier.total.missing,
        "duplicates": verifier.total.duplicates,
        "trade_ms_checked": verifier.total.checked,
        "lost_examples": verifier.examples,
        "undelivered_or_in_flight": verifier.total.unchecked_missing,
        "unfilled_minutes": missing_minutes,
        "minute_bars_checked": minutes_checked,
        "unfilled_examples": missing_examples,
        "events_sent": events_sent,
        "events_per_s": round(events_sent / max(streamed_s, 1)),
        "faults_injected": dict(sorted(injected.items())),
        "injection_failures": chaos.injection_failures,
        "recoveries": dict(sorted(recovered.items())),
        "recovery_s_max": dict(sorted(recovery_s.items())),
        "not_recovered": [f"{f.kind} at {f.at:.0f}s: {f.detail}" for f in chaos.faults if f.recovered_s is None],
        "rss_growth_mb_per_h": dict(sorted(growth.items())),
        "rss_mb_at_end": dict(sorted(rss_last.items())),
        "redis_memory_growth_mb_per_h": redis_growth,
        "max_growth_mb_per_h": limit,
        "memory_judged": judged,
        "warmup_s": round(warmup_s),
        "unexpected_exits": exits,
        "dead_letters_injected": expected_bad,
        "dead_letters_found": found_bad,
        "dead_letters_unexpected": len(other_dead),
        "dead_letters_unexpected_reasons": other_dead[:10],
        "flow_runs": {"total": len(runs), "completed": sum(r.state == "COMPLETED" for r in runs),
                      "cancelled": cancelled, "stopped_by_injected_block": stopped_by_block,
                      "by_flow": dict(Counter(r.flow for r in runs)), "failed": failed_runs,
                      "unaccounted": unaccounted},  # fmt: skip
        "settings": {"polygon_max_reconnects": MAX_RECONNECTS, "tick_retention_min": TICK_RETENTION_MIN,
                     "stream_maxlen": STREAM_MAXLEN, "edgar_cooloff_s": EDGAR_COOLOFF_S,
                     "paused_schedules": paused, "home": str(system.home)},  # fmt: skip
    }


def stop_system(system: System | None, home: Path, keep: bool) -> None:
    dev = _devstack()
    if system is not None:
        process = system.supervisor.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for handle in system.handles:
            handle.stop()
        system.standin.close()
    try:
        dev.down()
    except Exception as exc:  # noqa: BLE001 - reported; the leftover processes are named in the log
        progress(f"stopping the embedded services failed: {exc}")
    leftovers = [pid for pgid, pids in process_groups().items() for pid in pids
                 if Path(f"/proc/{pid}/environ").exists() and _in_home(pid, home)]  # fmt: skip
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not keep:
        shutil.rmtree(home, ignore_errors=True)


def _in_home(pid: int, home: Path) -> bool:
    try:
        return f"HEADWATER_HOME={home}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None, help="length of the fault schedule (default 20; --short: 3)")
    parser.add_argument("--short", action="store_true", help="compressed schedule: every fault kind once in 2-3 minutes")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    parser.add_argument("--drop-every", type=float, default=None, help="seconds between WebSocket drops")
    parser.add_argument("--max-growth-mb-per-h", type=float, default=50.0,
                        help="allowed RSS / Redis memory slope after warm-up (judged when >= 8 min of samples)")
    parser.add_argument("--home", default=None, help="HEADWATER_HOME for the run (default: a temporary folder, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary HEADWATER_HOME (logs, data)")
    args = parser.parse_args(argv)
    args.minutes = args.minutes or (3.0 if args.short else 20.0)
    report = run(args)
    print(json.dumps(report))
    failed = [name for name, ok in report["invariants"].items() if not ok]
    if failed:
        progress(f"FAILED invariants: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
