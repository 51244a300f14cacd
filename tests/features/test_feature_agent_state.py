"""Agent state in RedisJSON: validated documents, atomic partial updates, no lost updates under concurrency."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from features.agent_state import (
    AgentStateStore,
    Portfolio,
    Position,
    RiskLimits,
    StateConflictError,
    StateNotFoundError,
    UserProfile,
)


@pytest.fixture
def state(store) -> AgentStateStore:
    return AgentStateStore(store.r, store.keys)


def _portfolio(**kw) -> Portfolio:
    return Portfolio(**{"portfolio_id": "p1", "owner": "u1", "cash": 10_000.0, **kw})


def test_documents_are_validated_and_stored_at_their_keys(state, store):
    with pytest.raises(ValidationError):
        Portfolio(portfolio_id="p 1", owner="u1")
    with pytest.raises(ValidationError):
        _portfolio(positions={"aapl": Position(quantity=1, avg_cost=1)})
    with pytest.raises(ValidationError):
        RiskLimits(max_position_weight=2)
    stored = state.create_portfolio(_portfolio(watchlist=["AAPL"]))
    assert stored.created_ms > 0 and store.r.exists(store.keys.portfolio("p1"))
    assert state.get_portfolio("p1") == stored
    with pytest.raises(StateConflictError):
        state.create_portfolio(_portfolio())
    state.create_portfolio(_portfolio(cash=5.0), replace=True)
    assert state.get_portfolio("p1").cash == 5.0
    with pytest.raises(StateNotFoundError):
        state.get_portfolio("nope")


def test_profile_updates_are_validated_partial_writes(state):
    state.create_profile(UserProfile(user_id="u1", display_name="Ada"))
    updated = state.update_profile("u1", risk_tolerance="aggressive", portfolio_ids=["p1"])
    assert (updated.risk_tolerance, updated.portfolio_ids, updated.display_name, updated.version) == (
        "aggressive", ["p1"], "Ada", 1)  # fmt: skip
    with pytest.raises(ValueError, match="risk_tolerance"):
        state.update_profile("u1", risk_tolerance="yolo")
    with pytest.raises(ValueError, match="cannot update"):
        state.update_profile("u1", user_id="u2")
    with pytest.raises(StateNotFoundError):
        state.update_profile("ghost", display_name="x")


def test_fills_move_position_average_cost_and_cash(state):
    state.create_portfolio(_portfolio())
    assert state.apply_fill("p1", "BRK.B", 10, 100.0) == 10
    assert state.apply_fill("p1", "BRK.B", 10, 110.0) == 20
    p = state.get_portfolio("p1")
    assert p.positions["BRK.B"].avg_cost == pytest.approx(105.0) and p.cash == pytest.approx(10_000 - 2_100)
    state.apply_fill("p1", "BRK.B", -5, 120.0)  # a partial sale keeps the average cost
    assert state.get_portfolio("p1").positions["BRK.B"].avg_cost == pytest.approx(105.0)
    state.apply_fill("p1", "BRK.B", -25, 100.0)  # flips to short at the fill price
    p = state.get_portfolio("p1")
    assert p.positions["BRK.B"].quantity == -10 and p.positions["BRK.B"].avg_cost == 100.0
    state.apply_fill("p1", "BRK.B", 10, 90.0)  # closed: the position is removed
    p = state.get_portfolio("p1")
    assert "BRK.B" not in p.positions and p.cash == pytest.approx(10_000 - 2_100 + 600 + 2_500 - 900)
    assert p.version == 5
    with pytest.raises(ValidationError):
        state.apply_fill("p1", "brk", 1, 1.0)
    with pytest.raises(StateNotFoundError):
        state.apply_fill("nope", "AAPL", 1, 1.0)


def test_cash_watchlist_and_risk_limits(state):
    state.create_portfolio(_portfolio(risk_limits=RiskLimits(min_cash=1_000)))
    assert state.adjust_cash("p1", 500.0) == 10_500.0
    with pytest.raises(StateConflictError, match="min_cash"):
        state.adjust_cash("p1", -9_600.0)
    assert state.watch("p1", "MSFT") and not state.watch("p1", "MSFT")
    assert state.unwatch("p1", "MSFT") and not state.unwatch("p1", "MSFT")
    p = state.set_risk_limits("p1", max_position_weight=0.1, min_cash=0)
    assert p.risk_limits.max_position_weight == 0.1 and p.risk_limits.min_cash == 0
    with pytest.raises(ValueError, match="max_position_weight"):
        state.set_risk_limits("p1", max_position_weight=1.5)
    with pytest.raises(ValueError, match="unknown risk limits"):
        state.set_risk_limits("p1", leverage=3)


def test_concurrent_agents_lose_no_updates(state):
    """Eight agents book fills, move cash and edit the watchlist of one portfolio at the same time."""
    state.create_portfolio(_portfolio(cash=1_000_000.0))
    agents, rounds = 8, 60
    start = threading.Barrier(agents)
    errors: list[BaseException] = []

    def agent(n: int) -> None:
        try:
            start.wait()
            for i in range(rounds):
                state.apply_fill("p1", "AAPL", 1 if i % 3 else -1, 100.0 + n)
                state.adjust_cash("p1", 10.0)
                state.watch("p1", f"W{n}X{i % 5}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(agents)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    p = state.get_portfolio("p1")
    net_per_agent = sum(1 if i % 3 else -1 for i in range(rounds))
    assert p.positions["AAPL"].quantity == agents * net_per_agent
    spent = sum(net_per_agent * (100.0 + n) for n in range(agents))
    assert p.cash == 1_000_000.0 - spent + agents * rounds * 10.0
    assert sorted(p.watchlist) == sorted(f"W{n}X{j}" for n in range(agents) for j in range(5))
    assert p.version == agents * rounds * 2 + agents * 5  # fills + cash moves + first-time watches
