"""What the soak harness watches: the supervisor's output, process memory, and least-squares slopes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_STARTED = re.compile(r"^run_all: started (\S+) \(pid (\d+)\)")
_EXITED = re.compile(r"^run_all: (\S+) exited with code (-?\d+) after ([\d.]+)s")
_RUNNING = re.compile(r"^run_all: \d+ services running")


@dataclass
class Exit:
    at: float  # harness clock (monotonic seconds)
    service: str
    code: int
    pid: int | None


@dataclass
class Supervisor:
    """``scripts/run_all.py`` as a child process: its output goes to a log file and is parsed for starts/exits."""

    process: subprocess.Popen[bytes]
    log_path: Path
    clock: Callable[[], float]
    pids: dict[str, int] = field(default_factory=dict)  # service -> current leader pid
    starts: list[tuple[float, str, int]] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    running: threading.Event = field(default_factory=threading.Event)
    tail: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start_reader(self) -> None:
        threading.Thread(target=self._read, name="soak-supervisor-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log_path.open("ab") as log:
            for raw in iter(self.process.stdout.readline, b""):
                log.write(raw)
                line = raw.decode(errors="replace").rstrip()
                with self._lock:
                    self.tail.append(line)
                    del self.tail[:-200]
                    if m := _STARTED.match(line):
                        self.pids[m[1]] = int(m[2])
                        self.starts.append((self.clock(), m[1], int(m[2])))
                    elif m := _EXITED.match(line):
                        self.exits.append(Exit(self.clock(), m[1], int(m[2]), self.pids.get(m[1])))
                    elif _RUNNING.match(line):
                        self.running.set()
        self.running.set()  # EOF: the supervisor ended (the caller checks poll())

    def pid(self, service: str) -> int | None:
        with self._lock:
            return self.pids.get(service)

    def started_since(self, service: str, since: float) -> int | None:
        """The pid of a start of ``service`` after ``since`` (harness clock), or None."""
        with self._lock:
            return next((pid for at, name, pid in self.starts if name == service and at >= since), None)

    def last_lines(self, n: int = 40) -> str:
        with self._lock:
            return "\n".join(self.tail[-n:])


# -- processes and memory -----------------------------------------------------------------------------------
def process_groups() -> dict[int, list[int]]:
    """Process group id -> pids, from /proc."""
    groups: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            continue
        groups.setdefault(int(fields[2]), []).append(int(entry.name))
    return groups


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cmd_tag(pid: int) -> str:
    """A short name for a process: its module (``-m x``) or its program name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in argv if a]
    if "-m" in args and args.index("-m") + 1 < len(args):
        return args[args.index("-m") + 1]
    if "-c" in args:
        return "multiprocessing-child"
    return Path(args[0]).name if args else "?"


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) samples, per hour; None with fewer than 3 samples."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 3600.0


@dataclass
class MemorySampler:
    """Every ``every_s``: RSS of each process of the watched process groups and Redis ``used_memory``."""

    groups: Callable[[], dict[str, int]]  # label -> process group id (leader pid), asked at every sample
    redis_used_memory: Callable[[], float | None]
    clock: Callable[[], float]
    every_s: float = 5.0
    rss: dict[tuple[str, int], list[tuple[float, float]]] = field(default_factory=dict)  # (label, pid) -> samples
    redis: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="soak-memory", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        now = self.clock()
        by_group = process_groups()
        for label, pgid in self.groups().items():
            for pid in by_group.get(pgid, []):
                mb = rss_mb(pid)
                if mb is None:
                    continue
                name = label if pid == pgid else f"{label}/{cmd_tag(pid)}"
                self.rss.setdefault((name, pid), []).append((now, mb))
        try:
            used = self.redis_used_memory()
        except Exception:  # noqa: BLE001 - Redis down (a fault): no sample
            used = None
        if used is not None:
            self.redis.append((now, used))

    def dump(self, path: Path, origin: float) -> None:
        """The raw samples as JSON: ``{"rss": {"name/pid": [[s, MB], ...]}, "redis": [[s, MB], ...]}``, seconds
        from ``origin``."""
        rss = {f"{name}/{pid}": [[round(t - origin, 1), round(v, 1)] for t, v in samples]
               for (name, pid), samples in self.rss.items()}  # fmt: skip
        path.write_text(json.dumps({"rss": rss, "redis": [[round(t - origin, 1), round(v, 1)] for t, v in self.redis]}))

    def growth(self, after: float, until: float) -> tuple[dict[str, float], float | None, dict[str, float]]:
        """(RSS slope MB/h per process, Redis slope MB/h, last RSS MB per process) over samples after ``after``.

        A process counts when it lived through at least half of the window (transient flow-run processes and
        incarnations replaced by a restart early in the window do not); several pids of one name report the
        largest slope.
        """
        window = max(until - after, 1e-9)
        slopes: dict[str, float] = {}
        last: dict[str, float] = {}
        for (name, _pid), samples in self.rss.items():
            kept = [(t, v) for t, v in samples if t >= after]
            if len(kept) < 3 or kept[-1][0] - kept[0][0] < window / 2:
                continue
            slope = slope_per_hour(kept)
            if slope is not None and (name not in slopes or slope > slopes[name]):
                slopes[name] = round(slope, 1)
                last[name] = round(kept[-1][1], 1)
        redis_kept = [(t, v) for t, v in self.redis if t >= after]
        redis_slope = slope_per_hour(redis_kept)
        return slopes, None if redis_slope is None else round(redis_slope, 1), last


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    """Poll ``check`` (exceptions = not yet) until True or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - a service in the middle of a fault
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
