"""Running stream processors as N OS processes (one Python process per core scales; threads would not)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from types import FrameType

from headwater.keys import Keys
from headwater.log import setup_logging
from headwater.settings import Settings
from headwater.storage.redis import connect
from streamer.processor import MarketProcessor, default_consumer_name

log = logging.getLogger("headwater.streamer.workers")


def run_worker(redis_url: str | None = None, consumer: str | None = None, max_seconds: float | None = None) -> None:
    """One processor in this process; SIGTERM/SIGINT finish the batch in progress, release leases, exit."""
    settings = Settings()
    client = connect(settings.redis, url=redis_url)
    processor = MarketProcessor(client, Keys(settings.redis.key_prefix), settings.streams, consumer=consumer)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: %s received, finishing the current batch", processor.consumer, signal.Signals(signum).name)
        processor.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    processor.run(should_stop=lambda: deadline is not None and time.monotonic() > deadline)


def _child(redis_url: str | None, index: int, max_seconds: float | None) -> None:
    setup_logging()
    run_worker(redis_url, f"{default_consumer_name()}-{index}", max_seconds)


def run_pool(workers: int, redis_url: str | None = None, max_seconds: float | None = None) -> int:
    """Start ``workers`` processes and supervise them; SIGTERM/SIGINT stop them all gracefully."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(redis_url, i, max_seconds), name=f"processor-{i}") for i in range(workers)]
    for proc in procs:
        proc.start()
    log.info("started %d stream processor(s): pids %s", workers, [p.pid for p in procs])

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: each finishes its batch

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = 0
    for proc in procs:
        proc.join()
        if proc.exitcode not in (0, -signal.SIGTERM):
            failed += 1
            log.error("%s exited with %s", proc.name, proc.exitcode)
    return 1 if failed else 0
