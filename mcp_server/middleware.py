"""Cross-cutting pieces of the server: one JSON log line per call, bearer tokens from the store,
and a cap on HTTP request bodies."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
from fastmcp.exceptions import FastMCPError, ValidationError
from fastmcp.server.auth import AccessToken, TokenVerifier
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from mcp_server.hub import Hub

log = logging.getLogger("kb.mcp")


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            return json.dumps(
                {"ts": round(record.created, 3), "level": record.levelname, **data}, default=str
            )
        return super().format(record)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after start-up)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    """One JSON line per call on stderr (stdout belongs to the stdio transport)."""
    log.setLevel(level)
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        handler = _Stderr()
        handler.setFormatter(_JsonLines())
        log.addHandler(handler)


class CallLog(Middleware):
    """Logs each tool call and resource read: name, namespace, duration, outcome. Never a token."""

    def __init__(self, hub: Hub):
        self.hub = hub

    async def _timed(
        self, kind: str, name: str, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        start = time.perf_counter()
        outcome, error = "ok", None
        try:
            return await call_next(context)
        except FastMCPError as exc:
            outcome, error = ("invalid" if isinstance(exc, ValidationError) else "error"), str(exc)
            raise
        except Exception as exc:
            outcome, error = "failed", type(exc).__name__
            raise
        finally:
            entry = {
                "event": kind,
                kind: name,
                "namespace": self.hub.caller_namespace(),
                "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                "outcome": outcome,
            }
            if error:
                entry["error"] = error.splitlines()[0][:300]
            log.info("%s %s %s", kind, name, outcome, extra={"data": entry})

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        return await self._timed("tool", context.message.name, context, call_next)

    async def on_read_resource(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        return await self._timed("resource", str(context.message.uri), context, call_next)


class StoreTokens(TokenVerifier):
    """Bearer tokens from the store's token table (``kb token create``); each names a namespace."""

    def __init__(self, hub: Hub):
        super().__init__()
        self.hub = hub

    async def verify_token(self, token: str) -> AccessToken | None:
        namespace = await anyio.to_thread.run_sync(self.hub.resolve_token, token)
        if namespace is None:
            return None
        return AccessToken(
            token=token,
            client_id=f"namespace:{namespace}",
            scopes=[],
            claims={"namespace": namespace},
        )


class BodyLimit:
    """Refuses HTTP request bodies over ``max_bytes`` with 413, before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse(
                {"error": f"request body is {int(length)} bytes; the limit is {self.max_bytes}"},
                status_code=413,
            )(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return {"type": "http.disconnect"}
            return message

        await self.app(scope, limited, send)
