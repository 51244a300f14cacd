"""Model Context Protocol server for LLM agents: validated, point-in-time features, bars, news, social posts,
document search, nearest embeddings and the agent's own portfolio and profile, as MCP tools.

Built on the official ``mcp`` SDK (``MCPServer``, which mcp 2 renamed from FastMCP). Two transports:

* stdio (the default) -- ``HEADWATER_API_KEY=hw_... python -m features.mcp``: an agent host (Claude Desktop,
  an IDE, an agent framework) launches it as a subprocess; the key is checked once at start-up and every
  tool call acts for its owner;
* streamable HTTP -- ``python -m features.mcp --transport http --port 8001`` serves ``/mcp`` on loopback;
  every request carries ``Authorization: Bearer hw_...`` (the same API keys as the HTTP API, checked by the
  SDK's bearer middleware through ``ApiKeyVerifier``).

Every tool goes through ``features.access.AgentAccess`` (scopes, ownership, id validation, knowledge-time
``as_of``) and counts against the key's request rate. Failures come back as tool errors an LLM can act on,
e.g. ``forbidden: portfolio 'p2' does not belong to 'alice'`` or ``bad_request: timeframe must be one of ...``.
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, Literal

import redis
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from features import UnknownEntityError, UnknownFeatureError
from features.access import AgentAccess
from features.agent_state import Portfolio, StateConflictError, StateNotFoundError
from features.auth import ApiKeyStore, AuthError, ForbiddenError, Principal, RateLimitedError
from features.serving import ServingClient

log = logging.getLogger("headwater.features.mcp")

INSTRUCTIONS = """Headwater serves market data, news, social posts and SEC filings that were validated before storage.
Tickers are upper-case US symbols (AAPL, BRK.B). Times are ISO 8601 with a zone (2024-06-30T20:00:00Z) or epoch ms.
as_of answers "what was known at that time" (time_basis=knowledge, the default: no look-ahead from ingestion lag);
time_basis=event reads by event time. Start with list_features to see what get_features can return."""

Ticker = Annotated[str, Field(description="upper-case US symbol, e.g. AAPL or BRK.B", max_length=10)]
AsOf = Annotated[str | None, Field(description="point in time, ISO 8601 with zone or epoch ms; omit for now", max_length=40)]
Basis = Annotated[Literal["knowledge", "event"], Field(description="knowledge: what the pipeline had ingested by as_of; "
                                                                    "event: what had happened by as_of")]  # fmt: skip
PortfolioId = Annotated[str, Field(description="portfolio id (letters, digits, '_' or '-')", max_length=64)]

# Domain errors -> the kind an LLM reads first in the tool error.
_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (AuthError, "unauthenticated"), (ForbiddenError, "forbidden"), (RateLimitedError, "rate_limited"),
    (UnknownFeatureError, "unknown_feature"), (UnknownEntityError, "unknown_entity"),
    (StateNotFoundError, "not_found"), (StateConflictError, "conflict"), (ValueError, "bad_request"),
    (redis.ConnectionError, "unavailable"), (redis.TimeoutError, "unavailable"),
)  # fmt: skip


class ApiKeyVerifier:
    """The SDK's ``TokenVerifier`` over Headwater API keys (MCP over HTTP)."""

    def __init__(self, store: ApiKeyStore) -> None:
        self.store = store

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal = self.store.verify(token)
        except AuthError:
            return None
        return AccessToken(token=token, client_id=principal.key_id, scopes=sorted(principal.scopes), subject=principal.owner)


def build_server(access: AgentAccess, auth: ApiKeyStore, *, principal: Principal | None = None,
                 base_url: str = "http://127.0.0.1:8001") -> MCPServer:  # fmt: skip
    """The MCP server. With ``principal`` (stdio) every call acts for it; without, each HTTP request's bearer
    key decides (``base_url`` is this server's public address, named in the OAuth resource metadata)."""
    http_auth = None if principal is not None else AuthSettings(
        issuer_url=base_url, resource_server_url=f"{base_url}/mcp",
        validate_token_resource=False)  # API keys are not audience-bound: ApiKeyVerifier checks them itself
    server = MCPServer("headwater", title="Headwater market data for agents", instructions=INSTRUCTIONS, version="1",
                       token_verifier=None if principal is not None else ApiKeyVerifier(auth), auth=http_auth)  # fmt: skip

    def caller() -> Principal:
        current = principal
        if current is None:
            token = get_access_token()
            if token is None:
                raise AuthError("no API key on this request: send 'Authorization: Bearer hw_...'")
            current = auth.verify(token.token)
        auth.take(current)
        return current

    def tool(fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``fn`` as a tool whose domain errors become tool errors naming their kind."""

        @wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ToolError:
                raise
            except Exception as exc:
                kind = next((k for t, k in _KINDS if isinstance(exc, t)), None)
                if kind is None:
                    log.exception("tool %s failed", fn.__name__)
                    raise
                raise ToolError(f"{kind}: {str(exc)[:1000]}") from exc

        server.add_tool(run, name=fn.__name__, description=(fn.__doc__ or "").strip())
        return run

    @tool
    def list_features(group: Annotated[Literal["market", "sentiment", "documents", "portfolio"] | None,
                                       Field(description="only one group")] = None) -> list[dict[str, Any]]:  # fmt: skip
        """The features get_features can return: 'name:variant', group, value type and what each means."""
        return access.catalog(caller(), group)

    @tool
    def get_features(
        tickers: Annotated[list[Ticker], Field(min_length=1, max_length=100)],
        features: Annotated[list[str], Field(min_length=1, max_length=50, description="'name:variant' from list_features, e.g. last_price:v1")],
        as_of: AsOf = None,
        time_basis: Basis = "knowledge",
    ) -> dict[str, Any]:
        """Feature values per ticker (rows in ticker order, values in feature order; null = no data). Without
        as_of: the latest materialized values; with as_of: computed from the data known at that time."""
        return access.features(caller(), features, tickers, as_of=as_of, time_basis=time_basis)

    @tool
    def get_bars(
        ticker: Ticker,
        timeframe: Literal["1m", "5m", "1h", "1d"] = "1d",
        start: AsOf = None,
        end: AsOf = None,
        source: Annotated[Literal["trades", "polygon", "alphavantage"], Field(
            description="trades: bars compacted from real-time trades; or a provider's own bars")] = "trades",
        limit: Annotated[int, Field(ge=1, le=5000, description="newest bars to return")] = 100,
        as_of: AsOf = None,
        time_basis: Basis = "knowledge",
    ) -> dict[str, Any]:
        """OHLCV bars from TimeSeries, oldest first; each row is [t_ms, open, high, low, close, volume].
        as_of: only bars closed by then and, by default, that the pipeline had stored by then (no look-ahead
        from a backfill run later); time_basis="event" drops the stored-by-then condition."""
        return access.bars(caller(), ticker, timeframe, start=start, end=end, source=source, limit=limit,
                           as_of=as_of, time_basis=time_basis)  # fmt: skip

    @tool
    def latest_news(ticker: Ticker, as_of: AsOf = None, time_basis: Basis = "knowledge",
                    limit: Annotated[int, Field(ge=1, le=100)] = 10) -> list[dict[str, Any]]:  # fmt: skip
        """The latest news articles about a ticker, newest first: title, source, url, sentiment in [-1, 1],
        published_ms and stored_ms (when the pipeline learned it)."""
        return access.news(caller(), ticker, as_of=as_of, time_basis=time_basis, limit=limit)

    @tool
    def latest_social_posts(ticker: Ticker, as_of: AsOf = None, time_basis: Basis = "knowledge",
                            limit: Annotated[int, Field(ge=1, le=100)] = 10) -> list[dict[str, Any]]:  # fmt: skip
        """The latest Reddit and X posts mentioning a ticker, newest first, with score and sentiment."""
        return access.social(caller(), ticker, as_of=as_of, time_basis=time_basis, limit=limit)

    @tool
    def search_documents(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="the question, in plain words")],
        ticker: Ticker | None = None,
        form: Literal["10-K", "10-Q", "10-K/A", "10-Q/A", "transcript"] | None = None,
        as_of: AsOf = None,
        time_basis: Basis = "knowledge",
        k: Annotated[int, Field(ge=1, le=20)] = 5,
    ) -> dict[str, Any]:
        """Passages of SEC filings and earnings-call transcripts that best answer the query (keyword + semantic),
        only from documents public by as_of; each hit has its text, form, section and blob provenance."""
        return access.search_documents(caller(), query, ticker=ticker, form=form, as_of=as_of, time_basis=time_basis, k=k)

    @tool
    def nearest_embeddings(
        text: Annotated[str, Field(min_length=1, max_length=2000, description="what to look for, e.g. 'AI chip supply'")],
        feature: Annotated[str, Field(description="an embedding feature, e.g. filing_embedding:v1")] = "filing_embedding:v1",
        k: Annotated[int, Field(ge=1, le=100)] = 5,
    ) -> list[dict[str, Any]]:
        """The tickers whose embedding (e.g. of their latest filing) is nearest to the text (cosine distance)."""
        return access.nearest(caller(), feature, text=text, k=k)

    @tool
    def get_profile(user_id: Annotated[str, Field(max_length=64, description="your own user id")]) -> dict[str, Any]:
        """Your user profile: risk tolerance, portfolio ids, preferences."""
        return access.profile(caller(), user_id).model_dump()

    @tool
    def update_profile(user_id: Annotated[str, Field(max_length=64)],
                       display_name: str | None = None,
                       risk_tolerance: Literal["conservative", "moderate", "aggressive"] | None = None,
                       preferences: dict[str, str | int | float | bool] | None = None) -> dict[str, Any]:  # fmt: skip
        """Change fields of your own profile (only the ones given)."""
        changes = {k: v for k, v in {"display_name": display_name, "risk_tolerance": risk_tolerance,
                                     "preferences": preferences}.items() if v is not None}  # fmt: skip
        if not changes:
            raise ValueError("give at least one field to change")
        return access.update_profile(caller(), user_id, changes).model_dump()

    @tool
    def get_portfolio(portfolio_id: PortfolioId) -> dict[str, Any]:
        """One of your portfolios: cash, positions (quantity, average cost), watchlist, risk limits, version."""
        return access.portfolio(caller(), portfolio_id).model_dump()

    @tool
    def create_portfolio(portfolio_id: PortfolioId,
                         cash: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0) -> dict[str, Any]:  # fmt: skip
        """Create a new, empty portfolio that you own, with starting cash."""
        current = caller()
        return access.create_portfolio(current, Portfolio(portfolio_id=portfolio_id, owner=current.owner, cash=cash)).model_dump()

    @tool
    def update_portfolio(
        portfolio_id: PortfolioId,
        action: Annotated[Literal["fill", "cash", "watch", "unwatch", "risk_limits"], Field(
            description="fill: book a trade (ticker, quantity, price); cash: deposit/withdraw (amount); "
                        "watch/unwatch: watchlist (ticker); risk_limits: set limits (limits)")],
        ticker: Ticker | None = None,
        quantity: Annotated[float | None, Field(allow_inf_nan=False, description="shares, > 0 buy, < 0 sell")] = None,
        price: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = None,
        amount: Annotated[float | None, Field(allow_inf_nan=False, description="cash delta, > 0 deposit")] = None,
        limits: Annotated[dict[str, float] | None, Field(description="max_position_weight, max_gross_exposure, "
                                                                     "max_daily_loss, min_cash")] = None,
    ) -> dict[str, Any]:
        """Change one of your portfolios atomically and return what changed."""
        current = caller()
        if action == "fill":
            if ticker is None or quantity is None or price is None:
                raise ValueError("fill needs ticker, quantity and price")
            return access.fill(current, portfolio_id, ticker, quantity, price)
        if action == "cash":
            if amount is None:
                raise ValueError("cash needs amount")
            return access.cash(current, portfolio_id, amount)
        if action in ("watch", "unwatch"):
            if ticker is None:
                raise ValueError(f"{action} needs ticker")
            return access.watch(current, portfolio_id, ticker, add=action == "watch")
        if not limits:
            raise ValueError("risk_limits needs limits")
        return {"risk_limits": access.risk_limits(current, portfolio_id, limits).risk_limits.model_dump()}

    return server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m features.mcp", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                        help="stdio (default; the key comes from HEADWATER_API_KEY) or streamable HTTP")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="HTTP: interface to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8001, help="HTTP: port (default %(default)s)")
    parser.add_argument("--base-url", default=None, help="HTTP: this server's public URL (default http://HOST:PORT)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    args = _parser().parse_args(argv)
    setup_logging()  # to stderr: stdout is the stdio transport's
    serving = ServingClient.from_settings()
    auth = ApiKeyStore(serving._client, serving.keys)  # noqa: SLF001
    access = AgentAccess(serving)
    try:
        if args.transport == "stdio":
            try:
                principal = auth.verify(os.environ.get("HEADWATER_API_KEY"))
            except AuthError as exc:
                print(f"features.mcp: {exc} (set HEADWATER_API_KEY)", file=sys.stderr)
                return 2
            log.info("MCP over stdio for %s (key %s)", principal.owner, principal.key_id)
            build_server(access, auth, principal=principal).run("stdio")
        else:
            import uvicorn

            base_url = args.base_url or f"http://{args.host}:{args.port}"
            app = build_server(access, auth, base_url=base_url).streamable_http_app(host=args.host)
            log.info("MCP over streamable HTTP at %s/mcp", base_url)
            uvicorn.run(app, host=args.host, port=args.port, log_config=None)
    finally:
        serving.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
