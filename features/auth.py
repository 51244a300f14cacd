"""API keys for agents: issued by a CLI, stored hashed in Redis, checked on every HTTP and MCP-over-HTTP call.

A key is ``hw_<key_id>_<secret>``: ``key_id`` (12 hex characters) names the record, the secret (32 random bytes,
URL-safe) is never stored -- only its SHA-256 (a fast hash is right for high-entropy random tokens; there is no
password to brute-force). The record ``auth:key:{KEY_ID}`` holds the owner, the scopes, the per-key request
rate and when it was created or revoked; ``auth:owner:{OWNER}`` lists an owner's keys.

Scopes:

* ``features:read``  -- features, catalog, bars, news and social posts, nearest embeddings;
* ``documents:read`` -- document search;
* ``state:read``     -- read one's own user profile and portfolios (``state:write`` implies it);
* ``state:write``    -- create and update one's own profile and portfolios.

Ownership: a key acts for its ``owner``. It may read and write only the user whose id is the owner and the
portfolios whose ``owner`` field is the owner.

Verified keys are kept in the process for ``cache_s`` (default 5 s): a revoked key stops working within that
time, and a request costs no Redis round trip for authentication.

CLI: ``python -m features.auth issue --owner alice --scope features:read --scope state:write`` prints the key
once; ``list [--owner O]``, ``revoke KEY_ID``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass

import redis

from headwater.keys import Keys
from headwater.ratelimit import Limits, SharedRateLimiter

FEATURES_READ = "features:read"
DOCUMENTS_READ = "documents:read"
STATE_READ = "state:read"
STATE_WRITE = "state:write"
SCOPES: tuple[str, ...] = (FEATURES_READ, DOCUMENTS_READ, STATE_READ, STATE_WRITE)
IMPLIED: dict[str, frozenset[str]] = {STATE_WRITE: frozenset({STATE_READ})}

TOKEN_RE = re.compile(r"^hw_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
OWNER_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
DEFAULT_RATE_PER_S = 50.0
DEFAULT_BURST = 100


class AuthError(Exception):
    """No key, a malformed key, an unknown or revoked key: HTTP 401."""

    status = 401
    error = "unauthenticated"


class ForbiddenError(Exception):
    """A valid key without the scope, or acting on something its owner does not own: HTTP 403."""

    status = 403
    error = "forbidden"


class RateLimitedError(Exception):
    """The key's request rate is spent for now: HTTP 429 with ``Retry-After``."""

    status = 429
    error = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, the owner it acts for, its scopes and its request rate."""

    key_id: str
    owner: str
    scopes: frozenset[str]
    rate_per_s: float = DEFAULT_RATE_PER_S
    burst: int = DEFAULT_BURST

    def has(self, scope: str) -> bool:
        return scope in self.scopes or any(scope in IMPLIED.get(s, ()) for s in self.scopes)

    def require(self, scope: str) -> None:
        """Raise ``ForbiddenError`` unless the key carries ``scope``."""
        if not self.has(scope):
            raise ForbiddenError(f"this key lacks the scope {scope!r} (it has: {', '.join(sorted(self.scopes)) or 'none'})")

    def require_owner(self, owner: str, what: str) -> None:
        """Raise ``ForbiddenError`` unless ``owner`` is the key's owner."""
        if owner != self.owner:
            raise ForbiddenError(f"{what} does not belong to {self.owner!r}")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    token: str  # shown once; only its hash is stored
    owner: str
    scopes: tuple[str, ...]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


class ApiKeyStore:
    """Issue, verify, list and revoke API keys (records in Redis, verified keys cached briefly in the process)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, cache_s: float = 5.0) -> None:
        self.client = client
        self.keys = keys
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self._limiters: dict[str, SharedRateLimiter] = {}

    # -- administration (the CLI) ------------------------------------------------------------------------
    def issue(self, owner: str, scopes: list[str] | tuple[str, ...], *, rate_per_s: float = DEFAULT_RATE_PER_S,
              burst: int = DEFAULT_BURST, label: str = "") -> IssuedKey:  # fmt: skip
        """A new key for ``owner`` with ``scopes``; the returned token is the only copy of the secret."""
        if not OWNER_RE.match(owner):
            raise ValueError(f"invalid owner {owner!r}: 1-64 letters, digits, '_' or '-'")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ValueError(f"unknown or no scopes {unknown}: choose from {', '.join(SCOPES)}")
        if not (rate_per_s > 0 and burst >= 1):
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = {"sha256": _digest(secret), "owner": owner, "scopes": ",".join(sorted(set(scopes))),
                  "rate_per_s": repr(float(rate_per_s)), "burst": str(int(burst)), "label": label,
                  "created_ms": str(int(time.time() * 1000))}  # fmt: skip
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.api_key(key_id), mapping=record)
        pipe.sadd(self.keys.api_keys_of(owner), key_id)
        pipe.execute()
        return IssuedKey(key_id, f"hw_{key_id}_{secret}", owner, tuple(sorted(set(scopes))))

    def revoke(self, key_id: str) -> bool:
        """Mark a key revoked (kept for the audit trail); True if it existed and was active."""
        key = self.keys.api_key(key_id)
        if not self.client.exists(key) or self.client.hexists(key, "revoked_ms"):
            return False
        self.client.hset(key, "revoked_ms", str(int(time.time() * 1000)))
        with self._lock:
            self._cache = {t: v for t, v in self._cache.items() if v[1].key_id != key_id}
        return True

    def list(self, owner: str | None = None) -> list[dict[str, str]]:
        """The keys (without hashes) of one owner, or of everyone."""
        if owner is not None:
            ids = sorted(_text(k) for k in self.client.smembers(self.keys.api_keys_of(owner)))
        else:
            ids = sorted(self.keys.parse_as(k, "api_key").key_id or "" for k in
                         self.client.scan_iter(match=self.keys.glob_family("api_key"), count=1000))  # fmt: skip
        rows = []
        for key_id in filter(None, ids):
            record = {_text(k): _text(v) for k, v in self.client.hgetall(self.keys.api_key(key_id)).items()}
            if record:
                record.pop("sha256", None)
                rows.append({"key_id": key_id, **record})
        return rows

    # -- per request -------------------------------------------------------------------------------------
    def verify(self, token: str | None) -> Principal:
        """The principal of a bearer token, else ``AuthError`` saying what is wrong."""
        if not token:
            raise AuthError("missing API key: send 'Authorization: Bearer hw_...' (issue one with `python -m features.auth issue`)")
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        match = TOKEN_RE.match(token)
        if match is None:
            raise AuthError("malformed API key: expected hw_<12 hex>_<43 characters>")
        key_id, secret = match.groups()
        record = {_text(k): _text(v) for k, v in self.client.hgetall(self.keys.api_key(key_id)).items()}
        if not record or not hmac.compare_digest(record.get("sha256", ""), _digest(secret)):
            raise AuthError("unknown API key")
        if record.get("revoked_ms"):
            raise AuthError(f"API key {key_id} was revoked")
        principal = Principal(key_id, record["owner"], frozenset(filter(None, record.get("scopes", "").split(","))),
                              float(record.get("rate_per_s") or DEFAULT_RATE_PER_S),
                              int(record.get("burst") or DEFAULT_BURST))  # fmt: skip
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (now + self.cache_s, principal)
        return principal

    def take(self, principal: Principal) -> None:
        """Count one request against the key's rate (the shared limiter, so every API replica agrees)."""
        self.guard(principal).take()

    def limiter(self, principal: Principal) -> SharedRateLimiter:
        limiter = self._limiters.get(principal.key_id)
        if limiter is None:
            limiter = SharedRateLimiter(self.client, self.keys, "api", principal.key_id,
                                        Limits(per_second=principal.rate_per_s, burst=principal.burst))  # fmt: skip
            self._limiters[principal.key_id] = limiter
        return limiter

    def guard(self, principal: Principal) -> RateGuard:
        """The key's rate check for one request, to ride in the request's own Redis pipeline."""
        return RateGuard(self, principal)

    def authenticate(self, token: str | None) -> Principal:
        """``verify`` then ``take``: what every request does first."""
        principal = self.verify(token)
        self.take(principal)
        return principal


@dataclass
class RateGuard:
    """One request counted against its key's rate, sent in the pipeline that reads the request's data: the
    check costs no round trip of its own. ``check`` runs before any of the data is used, so a caller over its
    rate gets 429 and nothing else (the reads it rode with are discarded). ``settle`` counts a request that
    ended before its read (a malformed one), so every request counts."""

    store: ApiKeyStore
    principal: Principal
    used: bool = False

    def queue(self, pipe: redis.client.Pipeline) -> None:
        self.used = True
        self.store.limiter(self.principal).queue(pipe)

    def check(self, reply: list[int] | Exception) -> None:
        """``RateLimitedError`` unless the queued attempt's reply granted the request."""
        self._allow(*self.store.limiter(self.principal).decode(reply))

    def take(self) -> None:
        """The check on its own round trip (for reads that are not one pipeline)."""
        self.used = True
        self._allow(*self.store.limiter(self.principal).try_acquire())

    def settle(self) -> None:
        """``take`` unless the request was already counted."""
        if not self.used:
            self.take()

    def _allow(self, code: int, wait_s: float) -> None:
        if code != 0:
            raise RateLimitedError(f"rate limit of {self.principal.rate_per_s:g} requests/s for key "
                                   f"{self.principal.key_id} reached; retry in {wait_s:.2f}s", retry_after_s=wait_s)  # fmt: skip


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None if absent or another scheme)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m features.auth", description="Issue, list and revoke agents' API keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    issue = sub.add_parser("issue", help="issue a key (printed once; only its hash is stored)")
    issue.add_argument("--owner", required=True, help="the user id the key acts for (it owns its portfolios)")
    issue.add_argument("--scope", action="append", choices=SCOPES, required=True, dest="scopes",
                       help="repeatable: " + ", ".join(SCOPES))  # fmt: skip
    issue.add_argument("--rate", type=float, default=DEFAULT_RATE_PER_S, help="requests per second (default %(default)s)")
    issue.add_argument("--burst", type=int, default=DEFAULT_BURST, help="requests allowed at once (default %(default)s)")
    issue.add_argument("--label", default="", help="free text, e.g. the agent's name")
    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--owner")
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    from headwater.settings import Settings
    from headwater.storage.redis import connect

    args = _build_parser().parse_args(argv)
    settings = Settings()
    store = ApiKeyStore(connect(settings.redis), Keys(settings.redis.key_prefix))
    if args.command == "issue":
        issued = store.issue(args.owner, args.scopes, rate_per_s=args.rate, burst=args.burst, label=args.label)
        print(json.dumps({"key_id": issued.key_id, "owner": issued.owner, "scopes": list(issued.scopes),
                          "api_key": issued.token}, indent=2))  # fmt: skip
        print("store the api_key now: it is not shown again", file=sys.stderr)
        return 0
    if args.command == "list":
        print(json.dumps(store.list(args.owner), indent=2))
        return 0
    if not store.revoke(args.key_id):
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
