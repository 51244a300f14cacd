"""`make up`: the whole system on this machine as long-running services, until Ctrl-C.

    .venv/bin/python scripts/run_all.py [--only NAME,...] [--skip NAME,...] [--workers 2]
                                        [--metrics-port 9108] [--api-port 8000] [--no-services] [--no-deploy]
                                        [--duration S] [--grace S] [--restart] [--restart-backoff S]

1. Embedded services: Redis Stack, Azurite, the Prefect server and the provider stand-ins are started with
   ``devstack.up()`` (skipped where REDIS_URL etc. point elsewhere; ``--no-services`` uses the
   environment as it is). They are persistent state and keep running afterwards: ``make down`` stops them.
2. Prefect: ``python -m flows.deploy`` creates the ``headwater-local`` work pool and applies the deployments of
   prefect.yaml (skipped with ``--no-deploy`` or when the Prefect worker is not selected).
3. The long-running processes, each in its own process group, every output line prefixed with its name:

   streamer             python -m streamer stream
   processors           python -m streamer process --workers N
   news-processor       python -m headwater.processors.news
   social-processor     python -m headwater.processors.social
   document-processor   python -m headwater.processors.documents
   prefect-worker       prefect worker start --pool headwater-local --type process
   metrics              python -m headwater.metrics --port 9108   (http://127.0.0.1:9108/metrics)
   feature-api          python -m features.api --port 8000        (if the module exists)

4. Waits. Ctrl-C or SIGTERM (or ``--duration``) stops everything: SIGTERM to each process (each finishes its
   batch, releases its leases, flushes), up to ``--grace`` seconds, then SIGKILL for whatever is left in its
   process group; exit 0. By default nothing is restarted: if a process exits on its own, the others are
   stopped the same way and the exit code is 1, naming it -- a crash is seen, not hidden behind a restart loop.

   ``--restart`` restarts it instead, as Kubernetes does a pod's container (``restartPolicy: Always``): what is
   left of its process group is killed, and it starts again after a back-off that doubles from
   ``--restart-backoff`` seconds up to 60 s and resets once the process has run for 60 s. Every exit is still
   printed (``run_all: NAME exited with code C after T s; restart N in D s``), and the run ends with exit code 1
   if anything had to be restarted. ``bench/soak.py`` runs the system this way while it kills processes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PY = sys.executable
PREFECT = str(Path(sys.executable).parent / "prefect")
LOCAL_POOL = "headwater-local"


@dataclass
class Service:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    returncode: int | None = None
    started: float = 0.0
    log: list[str] = field(default_factory=list)
    restarts: int = 0
    backoff_s: float = 0.0
    restart_at: float | None = None  # monotonic time of the pending restart


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def plan(args: argparse.Namespace) -> list[Service]:
    """The processes to run, in start order (modules that do not exist yet are left out)."""
    candidates = [
        Service("streamer", [PY, "-m", "streamer", "stream"]),
        Service("processors", [PY, "-m", "streamer", "process", "--workers", str(args.workers)]),
        Service("news-processor", [PY, "-m", "headwater.processors.news"]),
        Service("social-processor", [PY, "-m", "headwater.processors.social"]),
        Service("document-processor", [PY, "-m", "headwater.processors.documents"]),
        Service("prefect-worker", [PREFECT, "worker", "start", "--pool", LOCAL_POOL, "--type", "process"]),
        Service("metrics", [PY, "-m", "headwater.metrics", "--port", str(args.metrics_port)]),
        Service("feature-api", [PY, "-m", "features.api", "--port", str(args.api_port)]),
    ]
    only = set(filter(None, (args.only or "").split(",")))
    skip = set(filter(None, (args.skip or "").split(",")))
    unknown = (only | skip) - {s.name for s in candidates}
    if unknown:
        raise SystemExit(f"unknown service(s): {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in candidates)}")
    chosen = []
    for service in candidates:
        if (only and service.name not in only) or service.name in skip:
            continue
        if service.argv[:2] == [PY, "-m"] and not _module_exists(service.argv[2]):
            print(f"run_all: {service.name}: module {service.argv[2]} not present, not started", flush=True)
            continue
        chosen.append(service)
    return chosen


def environment(use_services: bool) -> dict[str, str]:
    """The children's environment: this one, plus the embedded services' endpoints."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    if use_services:
        import devstack

        endpoints = devstack.up()
        env["REDIS_URL"] = endpoints.redis_url
        env["AZURE_STORAGE_CONNECTION_STRING"] = endpoints.blob_connection_string
        if endpoints.prefect_api_url:
            env["PREFECT_API_URL"] = endpoints.prefect_api_url
        if endpoints.standin_http_url:
            env["HEADWATER_STANDIN_HTTP_URL"] = endpoints.standin_http_url
        if endpoints.standin_ws_url:
            env["HEADWATER_STANDIN_WS_URL"] = endpoints.standin_ws_url
    return env


def deploy(env: dict[str, str]) -> None:
    """Work pool + deployments (python -m flows.deploy); a failure is reported, the services still run."""
    if not _module_exists("flows.deploy") or not env.get("PREFECT_API_URL"):
        print("run_all: deploy: flows.deploy or PREFECT_API_URL missing; skipping `prefect deploy`", flush=True)
        return
    result = subprocess.run([PY, "-m", "flows.deploy"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    for line in (result.stdout + result.stderr).splitlines()[-20:]:
        print(f"{'deploy':<19}| {line}", flush=True)
    if result.returncode != 0:
        print(f"run_all: ERROR: `python -m flows.deploy` exited {result.returncode}; flows are not scheduled", flush=True)


def _pump(service: Service) -> None:
    assert service.process is not None and service.process.stdout is not None
    for raw in iter(service.process.stdout.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        service.log.append(line)
        del service.log[:-50]
        print(f"{service.name:<19}| {line}", flush=True)


def start(service: Service, env: dict[str, str]) -> None:
    service.process = subprocess.Popen(service.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    service.started = time.monotonic()
    service.reader = threading.Thread(target=_pump, args=(service,), name=f"pump-{service.name}", daemon=True)
    service.reader.start()
    print(f"run_all: started {service.name} (pid {service.process.pid}): {' '.join(service.argv[1:])}", flush=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a pid reused by another user's process
        return False
    return True


RESTART_BACKOFF_MAX_S = 60.0
RESTART_RESET_AFTER_S = 60.0


def schedule_restart(service: Service, base_s: float) -> float:
    """Clear what is left of an exited service's process group; return the back-off before it starts again."""
    assert service.process is not None
    pgid = service.process.pid
    if _group_alive(pgid):  # e.g. the worker processes of a pool whose leader was killed
        os.killpg(pgid, signal.SIGKILL)
    if service.reader is not None:
        service.reader.join(2)
    ran_s = time.monotonic() - service.started
    service.backoff_s = base_s if ran_s >= RESTART_RESET_AFTER_S or not service.backoff_s else min(
        RESTART_BACKOFF_MAX_S, service.backoff_s * 2)  # fmt: skip
    service.restarts += 1
    service.restart_at = time.monotonic() + service.backoff_s
    return service.backoff_s


def stop_all(services: list[Service], grace_s: float) -> list[str]:
    """SIGTERM every leader, wait up to ``grace_s``, then clear each process group; returns names SIGKILLed."""
    running = [s for s in services if s.process is not None and s.process.poll() is None]
    for s in running:
        assert s.process is not None
        try:
            s.process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    for s in services:
        if s.process is None:
            continue
        try:
            s.returncode = s.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    killed = []
    for s in services:
        if s.process is None:
            continue
        pgid = s.process.pid  # start_new_session: the leader's pid is the group id
        if s.process.poll() is None or _group_alive(pgid):
            if _group_alive(pgid):  # leftovers (a leader that died early, children it did not stop)
                os.killpg(pgid, signal.SIGTERM)
                end = time.monotonic() + 2.0
                while _group_alive(pgid) and time.monotonic() < end:
                    time.sleep(0.05)
            if _group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)
                killed.append(s.name)
            s.returncode = s.process.wait()
        if s.reader is not None:
            s.reader.join(5)
    return killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/run_all.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated service names to run (default: all present)")
    parser.add_argument("--skip", help="comma-separated service names to leave out")
    parser.add_argument("--workers", type=int, default=2, help="market stream-processor processes")
    parser.add_argument("--metrics-port", type=int, default=9108)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--no-services", action="store_true", help="do not start the embedded services; use the environment")
    parser.add_argument("--no-deploy", action="store_true", help="do not create the work pool / apply prefect.yaml")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: until Ctrl-C)")
    parser.add_argument("--grace", type=float, default=20.0, help="seconds each process gets to exit after SIGTERM")
    parser.add_argument("--restart", action="store_true", help="restart a process that exits, with back-off (as Kubernetes does)")
    parser.add_argument("--restart-backoff", type=float, default=1.0, help="first restart delay in seconds (doubles up to 60)")
    args = parser.parse_args(argv)

    services = plan(args)
    if not services:
        print("run_all: nothing to run", flush=True)
        return 1
    env = environment(use_services=not args.no_services)
    if any(s.name == "prefect-worker" for s in services) and not args.no_deploy:
        deploy(env)

    stop = threading.Event()
    reason = {"why": "duration elapsed"}

    def on_signal(signum: int, _frame: object) -> None:
        reason["why"] = signal.Signals(signum).name
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    failed: Service | None = None
    try:
        for service in services:
            start(service, env)
        print(f"run_all: {len(services)} services running ({', '.join(s.name for s in services)}); "
              f"metrics on http://127.0.0.1:{args.metrics_port}/metrics; Ctrl-C stops them all", flush=True)  # fmt: skip
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.wait(0.2):
            for s in services:
                if s.restart_at is not None and time.monotonic() >= s.restart_at:
                    s.restart_at = None
                    start(s, env)
            exited = next((s for s in services if s.restart_at is None and s.process is not None
                           and s.process.poll() is not None), None)  # fmt: skip
            if exited is not None and args.restart:
                assert exited.process is not None
                ran_s = time.monotonic() - exited.started
                delay = schedule_restart(exited, args.restart_backoff)
                print(f"run_all: {exited.name} exited with code {exited.process.returncode} after {ran_s:.1f}s; "
                      f"restart {exited.restarts} in {delay:.1f}s", flush=True)  # fmt: skip
            elif exited is not None:
                failed = exited
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        if failed is not None:
            assert failed.process is not None
            print(f"run_all: {failed.name} exited with code {failed.process.returncode} after "
                  f"{time.monotonic() - failed.started:.1f}s; stopping the others (nothing is restarted)", flush=True)  # fmt: skip
        else:
            print(f"run_all: {reason['why']}: stopping {len(services)} services", flush=True)
        killed = stop_all(services, args.grace)
    for s in services:
        print(f"run_all: {s.name:<19} exit {s.returncode}", flush=True)
    if killed:
        print(f"run_all: had to SIGKILL: {', '.join(killed)}", flush=True)
    restarted = [f"{s.name} x{s.restarts}" for s in services if s.restarts]
    if restarted:
        print(f"run_all: restarted: {', '.join(restarted)}", flush=True)
    return 1 if failed is not None or killed or restarted else 0


if __name__ == "__main__":
    sys.exit(main())
