"""The generic stream worker against real Redis: acks, dead letters, retries, poison messages."""

import time

from headwater.keys import Keys
from headwater.streams import StreamWorker


def make(r, keys, handler, **kw):
    w = StreamWorker(r, keys, keys.raw_news, handler, consumer=kw.pop("consumer", "w1"), stage="test",
                     block_ms=20, claim_idle_ms=kw.pop("claim_idle_ms", 100), **kw)
    w.ensure_group()
    return w


def test_good_entries_are_acked_and_bad_ones_dead_lettered(r, key_prefix):
    keys = Keys(key_prefix)
    for body in [b"ok-1", b"bad", b"ok-2"]:
        r.xadd(keys.raw_news, {"body": body})
    seen = []

    def handler(entries):
        seen.extend(f[b"body"] for _, f in entries)
        return [None if f[b"body"].startswith(b"ok") else "not an article" for _, f in entries]

    w = make(r, keys, handler)
    assert w.step() == 3
    assert seen == [b"ok-1", b"bad", b"ok-2"]
    assert r.xpending(keys.raw_news, keys.group)["pending"] == 0
    (_, letter), = r.xrange(keys.dead_letter)
    assert letter[b"reason"] == b"not an article" and letter[b"raw.body"] == b"bad" and letter[b"stage"] == b"test"


def test_a_failing_handler_leaves_entries_pending_then_retries_then_dead_letters(r, key_prefix):
    keys = Keys(key_prefix)
    r.xadd(keys.raw_news, {"body": b"poison"})
    r.xadd(keys.raw_news, {"body": b"fine"})
    calls = []

    def handler(entries):
        calls.append([f[b"body"] for _, f in entries])
        if any(f[b"body"] == b"poison" for _, f in entries):
            raise RuntimeError("downstream broke")
        return [None] * len(entries)

    w = make(r, keys, handler, max_deliveries=3, batch_size=10)
    w.step()
    assert r.xpending(keys.raw_news, keys.group)["pending"] == 1  # the batch-mate went through on its own
    deadline = time.time() + 10
    while r.xpending(keys.raw_news, keys.group)["pending"] and time.time() < deadline:
        time.sleep(0.12)
        w.step()
    assert r.xpending(keys.raw_news, keys.group)["pending"] == 0
    letters = r.xrange(keys.dead_letter)
    assert [(f[b"reason"], f[b"raw.body"]) for _, f in letters] == [(b"failed 3 deliveries", b"poison")]
    assert [b"fine"] in calls and w.stats.done == 1 and w.stats.failures >= 3


def test_a_dead_workers_entries_are_claimed_by_another(r, key_prefix):
    keys = Keys(key_prefix)
    r.xadd(keys.raw_news, {"body": b"a"})
    crashed = make(r, keys, lambda entries: [None] * len(entries), consumer="crashed")
    r.xreadgroup(keys.group, "crashed", {keys.raw_news: ">"}, count=10)  # read, then "died" before acking
    done = []
    other = make(r, keys, lambda entries: done.extend(entries) or [None] * len(entries), consumer="other")
    time.sleep(0.15)
    other.step()
    assert [f[b"body"] for _, f in done] == [b"a"] and other.stats.reclaimed == 1
    assert r.xpending(keys.raw_news, keys.group)["pending"] == 0
    assert crashed.stats.entries == 0
