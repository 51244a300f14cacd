"""A rate limiter shared by every worker on every machine, kept in Redis.

Per provider and per API key: smooth rates (GCRA: "N requests per period", no boundary bursts — EDGAR
blocks at ~10 requests in *any* second), daily budgets (fixed UTC-day counters: a flow that spends its
budget stops cleanly with ``QuotaExhausted``), and a shared pause (``block``) that stops every worker at
once, e.g. for EDGAR's cool-off after a 403/429. One Lua script makes check-and-take atomic.

Prefect global concurrency limits express per-minute rates for flows; they cannot express a daily budget
and do not reach the real-time streamer, so both use this limiter (see config/data_sources.yaml).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.exceptions import NoScriptError

from headwater.keys import Keys, quota_day_window
from headwater.providers.http import QuotaExhausted
from headwater.timeframes import DAY_S

log = logging.getLogger("headwater.ratelimit")

# KEYS: 1 gcra state, 2 day counter, 3 block flag.  ARGV: interval_ms, burst, day_budget (-1 = none), day_ttl_s
# Returns {0, 0} = granted; {1, wait_ms} = wait for the rate; {2, ms} = blocked for ms; {3, 0} = budget spent.
_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local blocked = redis.call('PTTL', KEYS[3])
if blocked > 0 then return {2, blocked} end
local budget = tonumber(ARGV[3])
if budget >= 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= budget then return {3, 0} end
end
local interval = tonumber(ARGV[1])
if interval > 0 then
  local tolerance = interval * (tonumber(ARGV[2]) - 1)
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local allow_at = tat - tolerance
  if now < allow_at then return {1, allow_at - now} end
  local new_tat = tat + interval
  redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, new_tat - now + interval))
end
if budget >= 0 then
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
end
return {0, 0}
"""


@dataclass(frozen=True)
class Limits:
    """``per_second``/``per_minute`` become one smooth rate (the stricter wins); ``per_day`` a budget."""

    per_second: float | None = None
    per_minute: float | None = None
    per_day: int | None = None
    burst: int = 1

    @property
    def interval_ms(self) -> float:
        rates = []
        if self.per_second:
            rates.append(self.per_second)
        if self.per_minute:
            rates.append(self.per_minute / 60.0)
        return 1000.0 / min(rates) if rates else 0.0


class SharedRateLimiter:
    """``acquire()`` before each request; blocks (sleeping) while the shared rate says wait."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        provider: str,
        key_id: str,
        limits: Limits,
        *,
        max_wait_s: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.provider = provider
        self.limits = limits
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self._script = client.register_script(_ACQUIRE)
        self._gcra_key = keys.quota(provider, key_id, "gcra")
        self._keys, self._key_id = keys, key_id
        self._block_key = keys.quota(provider, key_id, "blocked")
        self.waited_s = 0.0

    def _day_key(self) -> str:
        return self._keys.quota(self.provider, self._key_id, quota_day_window(time.strftime("%Y%m%d", time.gmtime())))

    def try_acquire(self) -> tuple[int, float]:
        """One atomic attempt: (0, 0) granted, (1, s) rate wait, (2, s) blocked, (3, s) budget spent."""
        return self.decode(self._attempt(self.client))

    def queue(self, pipe: redis.client.Pipeline) -> None:
        """Queue one attempt on ``pipe`` (a caller's own pipeline: no round trip of its own) as a bare EVALSHA
        (redis-py's script objects would add a SCRIPT EXISTS round trip to every execute). Its reply, at that
        position in ``pipe.execute(raise_on_error=False)``, goes to ``decode``."""
        pipe.execute_command("EVALSHA", self._script.sha, 3, *self._keys_args())

    def decode(self, reply: list[int] | Exception) -> tuple[int, float]:
        """An attempt's reply as ``try_acquire`` returns it; a queued attempt that met a Redis without the script
        (restarted, flushed, a new replica) is made again on its own, loading the script."""
        if isinstance(reply, NoScriptError):
            return self.try_acquire()
        if isinstance(reply, Exception):
            raise reply
        code, ms = reply
        if code == 3:
            return 3, DAY_S - time.time() % DAY_S
        return int(code), int(ms) / 1000.0

    def _keys_args(self) -> list[str | int]:
        budget = -1 if self.limits.per_day is None else self.limits.per_day
        return [self._gcra_key, self._day_key(), self._block_key,
                int(self.limits.interval_ms), max(1, self.limits.burst), budget, 2 * DAY_S]  # fmt: skip

    def _attempt(self, client: redis.Redis) -> list[int]:
        keys_args = self._keys_args()
        return self._script(keys=keys_args[:3], args=keys_args[3:], client=client)

    def acquire(self) -> None:
        """Wait for a slot; raise ``QuotaExhausted`` when the daily budget is spent or waiting is pointless."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            code, wait_s = self.try_acquire()
            if code == 0:
                return
            if code == 3:
                raise QuotaExhausted(
                    self.provider,
                    f"daily budget of {self.limits.per_day} requests used up; resets in {wait_s / 3600:.1f} h (UTC midnight)",
                    resets_in_s=wait_s,
                )
            if time.monotonic() + wait_s > deadline:
                raise QuotaExhausted(self.provider, f"shared limiter says wait {wait_s:.0f}s, over max_wait {self.max_wait_s:.0f}s",
                                     resets_in_s=wait_s)
            if code == 2:
                log.warning("%s: paused by a shared block for %.1fs more", self.provider, wait_s)
            self.waited_s += wait_s
            self._sleep(wait_s)

    def block(self, seconds: float, reason: str) -> None:
        """Pause every worker using this provider key for ``seconds`` (e.g. EDGAR's 403/429 cool-off)."""
        self.client.set(self._block_key, reason, px=max(1, int(seconds * 1000)))
        log.error("%s: every worker paused for %.0fs: %s", self.provider, seconds, reason)

    def used_today(self) -> int:
        return int(self.client.get(self._day_key()) or 0)
