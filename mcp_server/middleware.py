"""Cross-cutting pieces of the server: one JSON log line per call (and agent-readable validation
errors), bearer tokens from the store, and the HTTP guards: a cap on request bodies, a rate limit
per token, and 401 answers worded for static tokens."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from fastmcp.exceptions import FastMCPError, ToolError, ValidationError
from fastmcp.server.auth import AccessToken, TokenVerifier
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from pydantic import ValidationError as PydanticValidationError
from starlette.responses import JSONResponse, Response

from kb.errors import KBError
from mcp_server.schema import explain

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from mcp_server.hub import Hub

log = logging.getLogger("kb.mcp")


def _where(exc: BaseException) -> str:
    """An unexpected error as its type and where it was raised (file, line, function): enough to
    find it, without its message (which may quote stored or caller data)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(exc).__name__
    code = tb.tb_frame.f_code
    return f"{type(exc).__name__} at {Path(code.co_filename).name}:{tb.tb_lineno} in {code.co_name}"


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
    """Logs each tool call and resource read: name, namespace, duration, outcome, and for writes
    the id written and the reason given. Never a token. Turns argument validation errors into one
    sentence an agent can act on (:func:`mcp_server.schema.explain`)."""

    def __init__(self, hub: Hub, schemas: Mapping[str, Mapping[str, Any]]):
        self.hub = hub
        self.schemas = schemas

    async def _timed(
        self,
        kind: str,
        name: str,
        context: MiddlewareContext[Any],
        call_next: CallNext[Any, Any],
        arguments: Mapping[str, Any] | None = None,
    ) -> Any:
        start = time.perf_counter()
        outcome, error, result = "ok", None, None
        try:
            result = await call_next(context)
            return result
        except ValidationError as exc:
            outcome = "invalid"
            cause = exc.__cause__
            if isinstance(cause, PydanticValidationError) and name in self.schemas:
                error = explain(name, cause, self.schemas[name])
                raise ToolError(error, log_level=logging.DEBUG) from exc
            error = str(exc)
            raise
        except FastMCPError as exc:
            cause = exc.__cause__
            if cause is not None and not isinstance(cause, KBError | FastMCPError):
                outcome, error = "failed", _where(cause)  # a bug, masked for the caller
            else:
                outcome, error = "error", str(exc)
            raise
        except Exception as exc:
            outcome, error = "failed", _where(exc)
            raise
        finally:
            entry: dict[str, Any] = {
                "event": kind,
                kind: name,
                "namespace": self.hub.caller_namespace(),
                "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                "outcome": outcome,
            }
            if arguments is not None and name in WRITES:
                entry.update(_written(arguments, result))
            if error:
                entry["error"] = error.splitlines()[0][:300]
            log.info("%s %s %s", kind, name, outcome, extra={"data": entry})

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        message = context.message
        return await self._timed(
            "tool", message.name, context, call_next, arguments=message.arguments or {}
        )

    async def on_read_resource(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        return await self._timed("resource", str(context.message.uri), context, call_next)


WRITES = {
    "record_experience",
    "update_experience",
    "forget_experience",
    "record_feedback",
    "propose_skill",
    "trace_failure",
    "run_skill",
    "check_action",
}


def _written(arguments: Mapping[str, Any], result: Any) -> dict[str, Any]:
    """What a write touched, for the log: the id (given or created) and the reason or note."""
    out: dict[str, Any] = {}
    for key in ("experience_id", "item_id", "name", "run_id"):
        if isinstance(arguments.get(key), str):
            out["item"] = arguments[key][:100]
            break
    structured = getattr(result, "structured_content", None)
    if "item" not in out and isinstance(structured, Mapping) and "id" in structured:
        out["item"] = str(structured["id"])[:100]
    for key in ("reason", "note", "success"):
        if key in arguments and isinstance(arguments[key], str | bool):
            value = arguments[key]
            out[key] = value[:300] if isinstance(value, str) else value
    return out


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


def rpc_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A refusal as a JSON-RPC error body, which MCP clients show to the user as it is (a bare
    status only reaches them as "Server returned an error response")."""
    return JSONResponse(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}},
        status_code=status,
        headers=dict(headers or {}),
    )


class BodyLimit:
    """Refuses HTTP request bodies over ``max_bytes`` with 413, before anything parses them.

    The body is read here, in full, up to the limit: a ``Content-Length`` over it is refused at
    once, a chunked body as soon as it passes the limit (the rest is drained, up to a cap, so
    that the client reads the answer rather than a reset). The application then gets the body
    that was read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int = 64 * 1024 * 1024):
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    def _refusal(self, size: str) -> Response:
        return rpc_error(
            413,
            f"request body is {size} bytes; this server takes at most {self.max_bytes}: shorten "
            "long step contents and results, or split the record",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refusal(length.decode())(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen <= self.max_bytes:
                chunks.append(body)
            elif seen > self.max_bytes + self.drain_bytes:
                break
            if not message.get("more_body", False):
                break
        if seen > self.max_bytes:
            size = f"over {seen}" if seen > self.max_bytes + self.drain_bytes else str(seen)
            await self._refusal(size)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RateLimit:
    """Per-token request rate on the HTTP transport (a token bucket each): ``burst`` requests at
    once, refilled at ``per_minute``; over it, 429 with ``Retry-After``. Requests without a bearer
    token share a bucket per client address. ``per_minute=0`` turns it off."""

    def __init__(
        self,
        app: ASGIApp,
        per_minute: float,
        burst: int,
        exempt: set[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app = app
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self.exempt = exempt or set()
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _key(self, scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
                return "token:" + hashlib.sha256(value[7:].strip()).hexdigest()
        client = scope.get("client") or ("unknown", 0)
        return f"address:{client[0]}"

    def take(self, key: str) -> float:
        """Take one request from ``key``'s bucket: 0 when allowed, else seconds to wait."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > 100_000:  # forget idle buckets (full ones)
                    self._buckets = {
                        k: v for k, v in self._buckets.items() if v[0] < self.burst - 1
                    }
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        wait = self.take(self._key(scope))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            await rpc_error(
                429,
                f"rate limit: at most {self.rate * 60:g} requests a minute per token (bursts of "
                f"{self.burst}); retry in {seconds} s",
                {"Retry-After": str(seconds)},
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


class TokenErrors:
    """401 answers worded for static bearer tokens (``kb token create``), not OAuth: what to
    send, and what to do when a token is refused."""

    MISSING = (
        "authentication required: send 'Authorization: Bearer <token>' with a token the "
        "operator created with 'kb token create'"
    )
    REFUSED = (
        "the bearer token was refused: it is unknown or revoked; ask the operator for a live "
        "token ('kb token create'; 'kb token list' shows which are revoked)"
    )

    def __init__(self, app: ASGIApp, path: str = "/mcp"):
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.path):
            await self.app(scope, receive, send)
            return
        bearer = any(
            name.lower() == b"authorization" and value[:7].lower() == b"bearer "
            for name, value in scope.get("headers", [])
        )
        message = self.REFUSED if bearer else self.MISSING
        replaced = False

        async def rewrite(event: Message) -> None:
            nonlocal replaced
            if event["type"] == "http.response.start" and event["status"] == 401:
                replaced = True
                challenge = 'Bearer error="invalid_token"' if bearer else "Bearer"
                body = json.dumps(
                    {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", challenge.encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            if replaced:  # the original 401 body: already answered
                return
            await send(event)

        await self.app(scope, receive, rewrite)
