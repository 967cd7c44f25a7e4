"""The service the server's lifespan yields: one ``Store`` shared by a ``KnowledgeBase`` handle per
namespace, and the helpers tools use to reach the caller's one and to turn store errors into MCP
errors."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.server.dependencies import get_access_token, get_context
from pydantic import BaseModel

from kb.config import Settings
from kb.errors import Invalid, KBError
from kb.service import KnowledgeBase
from kb.store import Store

if TYPE_CHECKING:
    from kb.embeddings import Embedder

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("kb.mcp")


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
        warm: bool,
    ):
        self.location = store
        self.namespace = namespace
        self.settings = settings
        self.require_token = require_token
        self.max_payload_bytes = max_payload_bytes
        self._embedder = embedder
        self._warm = warm
        self._store: Store | None = None
        self._handles: dict[str, KnowledgeBase] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open the server's own namespace (and start loading the model in the background, so
        that the first search does not pay for it)."""
        kb = self.kb(self.namespace)
        if self._warm:
            threading.Thread(
                target=self._warm_up, args=(kb,), daemon=True, name="kb-model-warmup"
            ).start()

    @staticmethod
    def _warm_up(kb: KnowledgeBase) -> None:
        try:
            kb.embedder.inner.encode(["warm up"])
        except KBError as exc:  # the first call that needs the model reports it to the caller
            log.warning(
                "model warm-up failed: %s",
                exc,
                extra={"data": {"event": "warmup", "outcome": "error", "error": str(exc)}},
            )

    def close(self) -> None:
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

    def check_size(self, what: str, data: Any) -> None:
        size = len(json.dumps(data, default=str, ensure_ascii=False).encode("utf-8"))
        if size > self.max_payload_bytes:
            raise Invalid(
                f"{what} is {size} bytes of JSON; the limit is {self.max_payload_bytes}: "
                "shorten long step contents and results, or split the record"
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
            raise ToolError(str(exc), log_level=logging.DEBUG) from exc

    return wrapper  # type: ignore[return-value]


def resource_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KBError as exc:
            raise ResourceError(str(exc), log_level=logging.DEBUG) from exc

    return wrapper  # type: ignore[return-value]


def given(**kwargs: Any) -> dict[str, Any]:
    """Keyword arguments the caller set, so that the service's own defaults apply to the rest."""
    return {k: v for k, v in kwargs.items() if v is not None}
