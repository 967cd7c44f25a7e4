"""``python -m mcp_server [--store PATH] [--namespace NS] [--http --host H --port N] [--allow-run]``.

The same as ``kb serve``, for clients that launch a module rather than a console script.
"""

from __future__ import annotations

import argparse

from mcp_server.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mcp_server", description=serve.__doc__)
    parser.add_argument(
        "--store", help="store directory (default: KB_STORE, else the user data dir)"
    )
    parser.add_argument(
        "--namespace", "-n", help="namespace served over stdio (default: KB_NAMESPACE)"
    )
    parser.add_argument(
        "--http", action="store_true", help="serve streamable HTTP (bearer tokens) instead of stdio"
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    parser.add_argument(
        "--allow-run",
        action="store_true",
        default=None,
        help="offer the run_skill tool (skill programs run sandboxed)",
    )
    args = parser.parse_args(argv)
    serve(
        store=args.store,
        namespace=args.namespace,
        allow_run=args.allow_run,
        http=args.http,
        host=args.host,
        port=args.port,
    )


if __name__ == "__main__":
    main()
