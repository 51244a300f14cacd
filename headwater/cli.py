"""``headwater``: one command for every part of the pipeline (installed by ``pyproject.toml``'s console script).

Each subcommand runs the ``main(argv)`` of the module that owns it, so ``headwater status --json`` is
``python -m headwater.status --json``. Modules are imported only when their subcommand runs (the table below
holds names, not imports): ``headwater --help`` is quick, and the core never imports the development stack.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module whose ``main(argv)`` runs it, one line of help). ``flows`` and ``processor`` take
#: the flow or processor name as their first argument.
COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("headwater.status", "streams, lag, workers, dead letters, quarantine, flow runs"),
    "services": ("devstack", "the embedded development stack: up, down, status, env"),
    "streamer": ("streamer", "the real-time WebSocket streamer and the market stream processors"),
    "processor": ("headwater.processors", "a batch stream processor: news, social or documents"),
    "flows": ("flows", "deploy the Prefect flows, or run one: headwater flows market_data_fetcher --ticker AAPL"),
    "apply": ("features.apply", "validate (dry run) or apply the Featureform definitions"),
    "engineer": ("features.engineer", "compute the features and write them to the online store"),
    "api": ("features.api", "serve features, bars, news, documents and agent state over HTTP"),
    "mcp": ("features.mcp", "the MCP server for LLM agents (stdio or streamable HTTP)"),
    "auth": ("features.auth", "issue, list and revoke agents' API keys"),
    "search": ("headwater.documents.search", "search filings and transcripts from the command line"),
    "memory": ("headwater.memory", "Redis memory per key family, biggest keys"),
    "metrics": ("headwater.metrics", "the Prometheus exporter"),
    "retention": ("flows.retention", "show or apply the hot retention of every key family"),
}
#: subcommands whose first argument names a submodule (``headwater flows archive ...`` -> ``flows.archive``).
NESTED = {"flows": "deploy", "processor": None}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: headwater <command> [arguments]  (headwater <command> --help for its own help)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def resolve(argv: Sequence[str]) -> tuple[str, list[str]]:
    """(module to run, its arguments) for a command line; ``ValueError`` for an unknown command."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        raise LookupError
    command, rest = argv[0], list(argv[1:])
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}")
    module = COMMANDS[command][0]
    if command in NESTED:
        default = NESTED[command]
        if rest and not rest[0].startswith("-"):
            name = rest.pop(0).replace("-", "_")
        elif default is not None:
            name = default
        else:
            raise ValueError(f"{command}: name which one, e.g. headwater {command} news")
        if not name.isidentifier():
            raise ValueError(f"{command}: invalid name {name!r}")
        module = f"{module}.{name}"
    return module, rest


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        module_name, rest = resolve(argv)
    except LookupError:
        print(_usage())
        return 0
    except ValueError as exc:
        print(f"headwater: {exc}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"headwater: no such module {module_name}", file=sys.stderr)
        return 2
    entry = getattr(module, "main", None)
    if entry is None:  # a package: its __main__ holds the CLI
        entry = importlib.import_module(f"{module_name}.__main__").main
    sys.argv = [f"headwater {' '.join(argv[: len(argv) - len(rest)])}", *rest]
    result = entry(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
