"""``kb`` commands: serve (the MCP server) and token (bearer tokens of its HTTP transport)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kb.cli.common import JsonOpt, console, err_console, handle_errors, print_json, state, store

token_app = typer.Typer(
    name="token",
    help="Bearer tokens of the HTTP MCP server; each is bound to one namespace.",
    no_args_is_help=True,
)


@handle_errors
def serve(
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP (bearer tokens) instead of stdio.")
    ] = False,
    host: Annotated[str, typer.Option(help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8765,
    allow_run: Annotated[
        bool,
        typer.Option(
            "--allow-run", help="Offer the run_skill tool (skill programs run sandboxed)."
        ),
    ] = False,
) -> None:
    """Run the MCP server: stdio (default, for desktop clients) or streamable HTTP.

    With --http it serves http://HOST:PORT/mcp (and GET /health); each request needs a bearer
    token from `kb token create`, which also decides the namespace it reads and writes.
    """
    from mcp_server.server import serve as run

    with store():  # opens the database first: a schema newer than this release is refused here
        pass
    if http and host not in {"127.0.0.1", "localhost", "::1"}:
        err_console.print(f"warning: serving on {host}: put TLS in front of it", highlight=False)
    run(
        store=state.store,
        namespace=state.namespace,
        allow_run=allow_run or None,
        http=http,
        host=host,
        port=port,
    )


@token_app.command("create")
@handle_errors
def token_create(
    name: Annotated[
        str, typer.Option("--name", help="What the token is for (a client, a person).")
    ],
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Namespace it grants (default: kb --namespace)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print its secret, once: it cannot be shown again."""
    with store() as kb:
        token = kb.create_token(name, namespace)
    if as_json:
        print_json(token)
        return
    console.print(token.secret, highlight=False, soft_wrap=True)
    err_console.print(
        f"token {token.id} ({token.name}) for namespace {token.namespace!r}; "
        "store the secret now, it is not shown again",
        highlight=False,
    )


@token_app.command("list")
@handle_errors
def token_list(
    active: Annotated[bool, typer.Option("--active", help="Hide revoked tokens.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the tokens of the store, every namespace (never the secrets)."""
    with store() as kb:
        tokens = kb.list_tokens(include_revoked=not active)
    if as_json:
        print_json(tokens)
        return
    table = Table()
    for column in ("id", "name", "namespace", "created", "state"):
        table.add_column(column, overflow="fold")
    for token in tokens:
        table.add_row(
            token.id,
            token.name,
            token.namespace,
            token.created_at.isoformat(timespec="seconds"),
            "[red]revoked[/red]" if token.revoked else "[green]active[/green]",
        )
    console.print(table if tokens else "no tokens")


@token_app.command("revoke")
@handle_errors
def token_revoke(
    token_id: Annotated[
        str, typer.Argument(help="The token's id (tok_...), from `kb token list`.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: requests bearing it are refused from now on."""
    with store() as kb:
        token = kb.revoke_token(token_id)
    if as_json:
        print_json(token)
    else:
        console.print(f"revoked {token.id} ({token.name}, namespace {token.namespace!r})")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``kb`` app."""
    app.command("serve")(serve)
    app.add_typer(token_app)
