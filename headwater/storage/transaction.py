"""A guarded MULTI/EXEC packed with hiredis directly.

redis-py serializes every argument through a Python-level generator before handing it to hiredis; for a
TS.MADD of tens of thousands of samples that is a third of a stream worker's CPU. This sends the same
protocol (WATCH, a check, MULTI, the commands, EXEC) on one pooled connection with ``hiredis.pack_command``.
"""

from __future__ import annotations

from collections.abc import Sequence

import hiredis
import redis
from redis.exceptions import ResponseError

Command = Sequence[str | bytes | int | float]


def guarded_transaction(
    client: redis.Redis, watch: Sequence[str], expect: Sequence[bytes | None], commands: Sequence[Command]
) -> list[object] | None:
    """Run ``commands`` atomically iff the ``watch`` keys hold ``expect`` now and until EXEC.

    Returns EXEC's replies (errors inside them as ``ResponseError`` objects), or None when a watched key
    differed or changed: then nothing was executed. A command Redis refuses to queue aborts the whole
    transaction and raises.
    """
    pack = hiredis.pack_command
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([pack(("WATCH", *watch)), pack(("MGET", *watch))])
        conn.read_response()
        if list(conn.read_response()) != list(expect):
            conn.send_packed_command([pack(("UNWATCH",))])
            conn.read_response()
            return None
        conn.send_packed_command([pack(("MULTI",)), *(pack(tuple(c)) for c in commands), pack(("EXEC",))])
        conn.read_response()
        queue_error: ResponseError | None = None
        for _ in commands:
            try:
                conn.read_response()
            except ResponseError as exc:
                queue_error = queue_error or exc
        try:
            replies = conn.read_response()
        except ResponseError as exc:  # EXECABORT after a queueing error
            raise queue_error or exc from exc
        return None if replies is None else list(replies)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
