"""Agent state in RedisJSON: user profiles and portfolios (positions, cash, watchlist, risk limits).

Documents live at ``json:user:{ID}`` and ``json:portfolio:{ID}`` (``headwater.keys.Keys``). Whole documents
are validated by the pydantic models below before they are written; partial updates are validated field by
field and applied on the server as JSON path operations, atomically, so two agents updating the same
portfolio never lose each other's changes:

* ``apply_fill`` -- one Lua script: reads the position, sets quantity/average cost (or deletes a closed
  position) and ``JSON.NUMINCRBY``s the cash;
* ``adjust_cash`` -- ``JSON.NUMINCRBY`` of ``$.cash`` in a script that refuses to go below ``min_cash``;
* ``watch`` / ``unwatch`` -- ``JSON.ARRINDEX`` + ``JSON.ARRAPPEND`` / ``JSON.ARRPOP`` in one script (a set);
* ``update_profile`` / ``set_risk_limits`` -- ``JSON.SET`` of the given paths in one script.

Every change increments ``$.version`` and sets ``$.updated_ms``. Amounts are float64 on the server (exact for
integer share counts and cent prices below 2**53).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from redis.exceptions import ResponseError

from headwater.keys import TICKER_RE, Keys

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
Ticker = Annotated[str, Field(pattern=TICKER_RE.pattern)]
Money = Annotated[float, Field(allow_inf_nan=False)]


class StateNotFoundError(LookupError):
    """No such profile or portfolio."""


class StateConflictError(ValueError):
    """The document exists already, or an update would break a limit."""


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RiskLimits(_Doc):
    """Limits an agent must respect before trading (enforced on cash changes; advisory for orders)."""

    max_position_weight: Annotated[float, Field(gt=0, le=1)] = 0.2
    max_gross_exposure: Annotated[float, Field(gt=0, le=10)] = 1.0
    max_daily_loss: Annotated[float, Field(gt=0, le=1)] = 0.05
    min_cash: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class Position(_Doc):
    quantity: Money
    avg_cost: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    updated_ms: int = 0


class Portfolio(_Doc):
    portfolio_id: Id
    owner: Id
    currency: Literal["USD"] = "USD"
    cash: Money = 0.0
    positions: dict[Ticker, Position] = Field(default_factory=dict)
    watchlist: list[Ticker] = Field(default_factory=list)
    risk_limits: RiskLimits = Field(default_factory=RiskLimits)
    version: int = 0
    created_ms: int = 0
    updated_ms: int = 0


class UserProfile(_Doc):
    user_id: Id
    display_name: Annotated[str, Field(min_length=1, max_length=200)]
    risk_tolerance: Literal["conservative", "moderate", "aggressive"] = "moderate"
    portfolio_ids: list[Id] = Field(default_factory=list)
    preferences: dict[str, str | int | float | bool] = Field(default_factory=dict)
    version: int = 0
    created_ms: int = 0
    updated_ms: int = 0


PROFILE_UPDATABLE = frozenset({"display_name", "risk_tolerance", "portfolio_ids", "preferences"})

# KEYS[1] doc; ARGV: now_ms, then path/json pairs.
_SET_PATHS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND') end
for i = 2, #ARGV, 2 do redis.call('JSON.SET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('JSON.NUMINCRBY', KEYS[1], '$.version', 1)
redis.call('JSON.SET', KEYS[1], '$.updated_ms', ARGV[1])
return 1
"""

# KEYS[1] portfolio; ARGV: ticker, quantity delta, price, now_ms.
_APPLY_FILL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND') end
local path = '$.positions["' .. ARGV[1] .. '"]'
local dq, price = tonumber(ARGV[2]), tonumber(ARGV[3])
local cur = cjson.decode(redis.call('JSON.GET', KEYS[1], path))[1]
local q0, avg0 = 0, 0
if cur then q0, avg0 = cur.quantity, cur.avg_cost end
local q1 = q0 + dq
local avg1 = avg0
if q1 == 0 then avg1 = 0
elseif q0 == 0 or (q0 > 0) ~= (q1 > 0) then avg1 = price
elseif (dq > 0) == (q0 > 0) then avg1 = (q0 * avg0 + dq * price) / q1 end
if q1 == 0 then
  redis.call('JSON.DEL', KEYS[1], path)
else
  redis.call('JSON.SET', KEYS[1], path,
    string.format('{"quantity":%.17g,"avg_cost":%.17g,"updated_ms":%s}', q1, avg1, ARGV[4]))
end
redis.call('JSON.NUMINCRBY', KEYS[1], '$.cash', string.format('%.17g', -dq * price))
redis.call('JSON.NUMINCRBY', KEYS[1], '$.version', 1)
redis.call('JSON.SET', KEYS[1], '$.updated_ms', ARGV[4])
return string.format('%.17g', q1)
"""

# KEYS[1] portfolio; ARGV: delta, now_ms.
_ADJUST_CASH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND') end
local cash = cjson.decode(redis.call('JSON.GET', KEYS[1], '$.cash'))[1]
local floor = cjson.decode(redis.call('JSON.GET', KEYS[1], '$.risk_limits.min_cash'))[1] or 0
local delta = tonumber(ARGV[1])
if delta < 0 and cash + delta < floor then return redis.error_reply('LIMIT cash would fall below min_cash') end
local new = redis.call('JSON.NUMINCRBY', KEYS[1], '$.cash', ARGV[1])
redis.call('JSON.NUMINCRBY', KEYS[1], '$.version', 1)
redis.call('JSON.SET', KEYS[1], '$.updated_ms', ARGV[2])
return new
"""

# KEYS[1] portfolio; ARGV: quoted ticker, 'add' | 'remove', now_ms.
_WATCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND') end
local idx = redis.call('JSON.ARRINDEX', KEYS[1], '$.watchlist', ARGV[1])[1]
if ARGV[2] == 'add' and idx == -1 then
  redis.call('JSON.ARRAPPEND', KEYS[1], '$.watchlist', ARGV[1])
elseif ARGV[2] == 'remove' and idx >= 0 then
  redis.call('JSON.ARRPOP', KEYS[1], '$.watchlist', idx)
else
  return 0
end
redis.call('JSON.NUMINCRBY', KEYS[1], '$.version', 1)
redis.call('JSON.SET', KEYS[1], '$.updated_ms', ARGV[3])
return 1
"""

_TICKER = TypeAdapter(Ticker)
_MONEY = TypeAdapter(Money)
_POSITIVE = TypeAdapter(Annotated[float, Field(gt=0, allow_inf_nan=False)])


def _now_ms() -> int:
    return int(time.time() * 1000)


def _num(value: float) -> str:
    """A float as exact text for Lua's tonumber / JSON.NUMINCRBY."""
    return repr(float(value))


class AgentStateStore:
    """Profiles and portfolios of agents, as validated RedisJSON documents with atomic partial updates."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._set_paths = client.register_script(_SET_PATHS)
        self._apply_fill = client.register_script(_APPLY_FILL)
        self._adjust_cash = client.register_script(_ADJUST_CASH)
        self._watch = client.register_script(_WATCH)

    # -- profiles ----------------------------------------------------------------------------------------
    def create_profile(self, profile: UserProfile, *, replace: bool = False) -> UserProfile:
        """Store a new profile (or replace one with ``replace=True``); returns what was stored."""
        return self._create(self.keys.user(profile.user_id), profile, replace)

    def get_profile(self, user_id: str) -> UserProfile:
        return UserProfile.model_validate_json(self._get(self.keys.user(user_id), f"user {user_id!r}"))

    def update_profile(self, user_id: str, /, **changes: Any) -> UserProfile:
        """Set some top-level fields of a profile (validated), atomically."""
        unknown = set(changes) - PROFILE_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; updatable: {sorted(PROFILE_UPDATABLE)}")
        paths = {f"$.{name}": _field_json(UserProfile, name, value) for name, value in changes.items()}
        self._run(self._set_paths, self.keys.user(user_id), [_now_ms(), *_flatten(paths)], f"user {user_id!r}")
        return self.get_profile(user_id)

    # -- portfolios --------------------------------------------------------------------------------------
    def create_portfolio(self, portfolio: Portfolio, *, replace: bool = False) -> Portfolio:
        """Store a new portfolio (or replace one with ``replace=True``); returns what was stored."""
        return self._create(self.keys.portfolio(portfolio.portfolio_id), portfolio, replace)

    def get_portfolio(self, portfolio_id: str) -> Portfolio:
        raw = self._get(self.keys.portfolio(portfolio_id), f"portfolio {portfolio_id!r}")
        return Portfolio.model_validate_json(raw)

    def apply_fill(self, portfolio_id: str, ticker: str, quantity: float, price: float) -> float:
        """Book a fill (``quantity`` < 0 sells): position, average cost and cash in one step; returns the new
        quantity."""
        ticker, quantity, price = _TICKER.validate_python(ticker), _MONEY.validate_python(quantity), _POSITIVE.validate_python(price)
        args = [ticker, _num(quantity), _num(price), _now_ms()]
        return float(self._run(self._apply_fill, self.keys.portfolio(portfolio_id), args, f"portfolio {portfolio_id!r}"))

    def adjust_cash(self, portfolio_id: str, delta: float) -> float:
        """Deposit (> 0) or withdraw (< 0) cash; refuses to go below ``risk_limits.min_cash``; returns the cash."""
        delta = _MONEY.validate_python(delta)
        reply = self._run(self._adjust_cash, self.keys.portfolio(portfolio_id), [_num(delta), _now_ms()],
                          f"portfolio {portfolio_id!r}")  # fmt: skip
        return float(json.loads(reply)[0])

    def watch(self, portfolio_id: str, ticker: str) -> bool:
        """Add a ticker to the watchlist (a set); True if it was added."""
        return self._watchlist(portfolio_id, ticker, "add")

    def unwatch(self, portfolio_id: str, ticker: str) -> bool:
        """Remove a ticker from the watchlist; True if it was there."""
        return self._watchlist(portfolio_id, ticker, "remove")

    def set_risk_limits(self, portfolio_id: str, /, **limits: float) -> Portfolio:
        """Set some risk limits (validated against ``RiskLimits``), atomically."""
        unknown = set(limits) - set(RiskLimits.model_fields)
        if unknown:
            raise ValueError(f"unknown risk limits {sorted(unknown)}; known: {sorted(RiskLimits.model_fields)}")
        paths = {f"$.risk_limits.{name}": _field_json(RiskLimits, name, value) for name, value in limits.items()}
        self._run(self._set_paths, self.keys.portfolio(portfolio_id), [_now_ms(), *_flatten(paths)],
                  f"portfolio {portfolio_id!r}")  # fmt: skip
        return self.get_portfolio(portfolio_id)

    # -- helpers -----------------------------------------------------------------------------------------
    def _watchlist(self, portfolio_id: str, ticker: str, op: str) -> bool:
        quoted = json.dumps(_TICKER.validate_python(ticker))
        args = [quoted, op, _now_ms()]
        return bool(self._run(self._watch, self.keys.portfolio(portfolio_id), args, f"portfolio {portfolio_id!r}"))

    def _create(self, key: str, doc: UserProfile | Portfolio, replace: bool) -> Any:
        now = _now_ms()
        stored = doc.model_copy(update={"created_ms": doc.created_ms or now, "updated_ms": now})
        type(doc).model_validate(stored.model_dump())
        ok = self.client.execute_command("JSON.SET", key, "$", stored.model_dump_json(), *(() if replace else ("NX",)))
        if not ok:
            raise StateConflictError(f"{key} exists already")
        return stored

    def _get(self, key: str, what: str) -> str:
        raw = self.client.execute_command("JSON.GET", key)
        if raw is None:
            raise StateNotFoundError(f"no {what}")
        return raw

    @staticmethod
    def _run(script: Any, key: str, args: list[Any], what: str) -> Any:
        try:
            return script(keys=[key], args=args)
        except ResponseError as exc:
            text = str(exc)
            if text.startswith("NOTFOUND"):
                raise StateNotFoundError(f"no {what}") from None
            if text.startswith("LIMIT"):
                raise StateConflictError(text.removeprefix("LIMIT ")) from None
            raise


def _field_json(model: type[BaseModel], name: str, value: Any) -> str:
    """``value`` validated as field ``name`` of ``model``, as JSON text."""
    info = model.model_fields[name]
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)
    try:
        return adapter.dump_json(adapter.validate_python(value)).decode()
    except ValidationError as exc:
        raise ValueError(f"{name}: {exc.errors()[0]['msg']}") from None


def _flatten(paths: dict[str, str]) -> list[str]:
    return [item for pair in paths.items() for item in pair]
