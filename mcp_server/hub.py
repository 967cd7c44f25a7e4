"""The service the server's lifespan yields: one ``Store`` shared by a ``KnowledgeBase`` handle per
namespace, and the helpers tools use to reach the caller's one and to turn store errors into MCP
errors."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.server.dependencies import get_access_token, get_context
from pydantic import BaseModel

from kb.config import Settings
from kb.errors import KBError
from kb.limits import check_record
from kb.retrieval import clip
from kb.service import KnowledgeBase
from kb.store import Store

if TYPE_CHECKING:
    from kb.embeddings import Embedder

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("kb.mcp")
ERROR_CHARS = 600


class AuthRequired(KBError):
    """An HTTP call arrived without a valid token (the auth middleware normally stops it earlier)."""


class Hub:
    """One store per server, and a cheap ``KnowledgeBase`` handle on it per namespace."""

    def __init__(
        self,
        *,
        store: Path | None,
        namespace: str,
        settings: Settings,
        embedder: Embedder | None,
        require_token: bool,
        max_payload_bytes: int,
    ):
        self.location = store
        self.namespace = namespace
        self.settings = settings
        self.require_token = require_token
        self.max_payload_bytes = max_payload_bytes
        self._embedder = embedder
        self._store: Store | None = None
        self._handles: dict[str, KnowledgeBase] = {}
        self._lock = threading.Lock()
        self._warm: threading.Thread | None = None
        self._ready = threading.Event()
        self.warm_error: str | None = None
        """Why the warm-up failed (the model could not be loaded), if it did."""

    def open(self) -> None:
        """Open the server's own namespace (the store, its engine and index)."""
        self.kb(self.namespace)

    # -- warm-up -------------------------------------------------------------------------------
    def start_warm_up(self) -> None:
        """Load the embedding model and open the index in the background, from the moment the
        server is built (not only once the transport is up), so that the first call that needs
        them, a search or a record, does not pay for them."""
        if self._warm is None:
            self._warm = threading.Thread(target=self._warm_up, daemon=True, name="kb-warm-up")
            self._warm.start()

    def _warm_up(self) -> None:
        start = time.perf_counter()
        try:
            kb = self.kb(self.namespace)
            kb.embedder.inner.encode(["warm up"])
            kb.catch_up(progress=_build_progress)  # a new server's index is built from SQL
            kb.store.ready()
            kb.follow()
        except KBError as exc:  # the first call that needs the model reports it to the caller
            self.warm_error = str(exc)
            log.warning(
                "warm-up failed: %s",
                exc,
                extra={"data": {"event": "warmup", "outcome": "error", "error": str(exc)}},
            )
            return
        finally:
            self._ready.set()
        log.info(
            "model ready",
            extra={
                "data": {
                    "event": "warmup",
                    "outcome": "ok",
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                }
            },
        )

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until the warm-up is done (or ``timeout`` seconds); True when it is."""
        return self._ready.wait(timeout) if self._warm is not None else self.model_ready()

    def model_ready(self) -> bool:
        """Whether the embedding model is loaded, so calls are answered at full speed."""
        if self._ready.is_set():
            return self.warm_error is None
        if self._warm is not None:
            return False
        inner = self._embedder
        if inner is None:
            with self._lock:
                inner = self._store.embedder.inner if self._store is not None else None
        return inner is not None and bool(getattr(inner, "loaded", True))

    def index_lag(self) -> dict[str, Any]:
        """How far the server's index is behind the database's change log."""
        return self.kb(self.namespace).index_lag()

    def close(self) -> None:
        if self._warm is not None:
            self._warm.join(timeout=120)
        with self._lock:
            store, self._store, self._handles = self._store, None, {}
        if store is not None:
            store.close()

    def kb(self, namespace: str) -> KnowledgeBase:
        """The handle of ``namespace`` on the server's one store (engine, index, lock, model)."""
        with self._lock:
            kb = self._handles.get(namespace)
            if kb is None:
                if self._store is None:
                    opened = KnowledgeBase.open(
                        self.location,
                        namespace=namespace,
                        settings=self.settings,
                        embedder=self._embedder,
                    )
                    self._store = opened.store
                kb = KnowledgeBase.on(self._store, namespace)
                self._handles[namespace] = kb
            return kb

    def caller_namespace(self) -> str | None:
        """The namespace of this call: the token's over HTTP, else the server's."""
        if not self.require_token:
            return self.namespace
        token = get_access_token()
        namespace = token.claims.get("namespace") if token is not None else None
        return namespace if isinstance(namespace, str) else None

    def current(self) -> KnowledgeBase:
        namespace = self.caller_namespace()
        if namespace is None:
            raise AuthRequired("authentication required: send 'Authorization: Bearer <token>'")
        return self.kb(namespace)

    def resolve_token(self, secret: str) -> str | None:
        return self.kb(self.namespace).resolve_token(secret)

    def check_size(self, what: str, data: Mapping[str, Any]) -> None:
        """The store's record limits (:mod:`kb.limits`), with this server's request cap."""
        check_record(
            data,
            what=what,
            max_bytes=self.max_payload_bytes,
            step_chars=self.settings.max_step_chars,
        )


def _build_progress(done: int, total: int) -> None:
    log.info(
        "index build %d/%d",
        done,
        total,
        extra={"data": {"event": "index_build", "done": done, "total": total}},
    )


def current_hub() -> Hub:
    hub = get_context().lifespan_context.get("hub")
    if not isinstance(hub, Hub):
        raise ToolError("the server is not started (no lifespan)")
    return hub


def current_kb() -> KnowledgeBase:
    return current_hub().current()


def plain(value: Any) -> dict[str, Any]:
    """A result as a JSON object (for methods whose result type is not pinned here)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return value
    return {"result": value}


def tool_errors(fn: F) -> F:
    """Store errors become MCP tool errors carrying the store's message (logged by CallLog, so
    fastmcp's own error log, with its traceback, is kept to DEBUG)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KBError as exc:
            raise ToolError(error_text(exc), log_level=logging.DEBUG) from exc

    return wrapper  # type: ignore[return-value]


def error_text(exc: Exception) -> str:
    """An error as the agent reads it: one line, capped (a message may quote stored values)."""
    return clip(str(exc), ERROR_CHARS)


def resource_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KBError as exc:
            raise ResourceError(error_text(exc), log_level=logging.DEBUG) from exc

    return wrapper  # type: ignore[return-value]


def given(**kwargs: Any) -> dict[str, Any]:
    """Keyword arguments the caller set, so that the service's own defaults apply to the rest."""
    return {k: v for k, v in kwargs.items() if v is not None}
