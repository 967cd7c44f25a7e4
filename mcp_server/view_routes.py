"""``/view``: the run viewer over HTTP, for people with a browser.

A person signs in once at ``/view/login`` with a token from ``kb token create``: the form is
POSTed, and the token is kept in an HttpOnly, SameSite=Strict cookie scoped to ``/view``, so it
never appears in a URL, a log line or a script. Every request resolves the cookie's token again
(a revoked token stops working at once) and shows that token's namespace only.

Thin like the tools: parse, one ``KnowledgeBase`` call, respond.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlencode, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kb.errors import Invalid, KBError, NotFound
from kb.view import content_security_policy, render_login, render_message

if TYPE_CHECKING:
    from kb.service import KnowledgeBase

COOKIE = "kb_view"
COOKIE_PATH = "/view"
LOGIN = "/view/login"
COOKIE_MAX_AGE = 12 * 3600
"""Seconds a sign-in lasts in the browser (the token itself lives until revoked)."""
MAX_LIMIT = 500


class Tenants(Protocol):
    """What the routes need of the server's hub (:class:`mcp_server.hub.Hub` has both)."""

    def resolve_token(self, secret: str) -> str | None: ...

    def kb(self, namespace: str) -> KnowledgeBase: ...


def _headers(html: str) -> dict[str, str]:
    csp = content_security_policy(html) or "default-src 'none'"
    return {
        "Content-Security-Policy": f"{csp}; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _html(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=_headers(html))


def _safe_next(value: object) -> str:
    """Only a path under /view (never another site) to go back to after signing in."""
    text = value if isinstance(value, str) else ""
    if text == COOKIE_PATH or (text.startswith(COOKIE_PATH + "/") and "//" not in text):
        return text
    return COOKIE_PATH


def _same_origin(request: Request) -> bool:
    """A browser's POST names its origin; a sign-in form posted from another site is refused."""
    origin = request.headers.get("origin")
    # the host only: behind a TLS proxy the scheme the app sees may differ from the browser's
    return origin is None or urlsplit(origin).netloc == request.url.netloc


def view_routes(hub_getter: Callable[[], Tenants]) -> list[Route]:
    """The viewer's routes: ``/view/login`` (GET form, POST sign-in), ``/view/logout`` (POST),
    ``/view`` (the listing: ``?outcome=failure|success|partial|unknown|all&domain=&limit=``) and
    ``/view/{experience_id}`` (one run).

    Args:
        hub_getter: returns the server's :class:`~mcp_server.hub.Hub` (its one store, and
            ``resolve_token``); called on each request, so it may be built after the routes.
    """

    async def signed_in(request: Request) -> KnowledgeBase | None:
        secret = request.cookies.get(COOKIE)
        if not secret:
            return None
        hub = hub_getter()
        namespace = await anyio.to_thread.run_sync(hub.resolve_token, secret)
        return None if namespace is None else hub.kb(namespace)

    def to_login(request: Request) -> Response:
        response = RedirectResponse(
            f"{LOGIN}?{urlencode({'next': request.url.path})}", status_code=303
        )
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return _html(render_login(next_path=_safe_next(request.query_params.get("next"))))
        if not _same_origin(request):
            return _html(render_message("Refused", "The sign-in came from another site."), 403)
        form = await request.form()
        secret = form.get("token")
        next_path = _safe_next(form.get("next"))
        hub = hub_getter()
        namespace = (
            await anyio.to_thread.run_sync(hub.resolve_token, secret.strip())
            if isinstance(secret, str) and secret.strip()
            else None
        )
        if namespace is None:
            page = render_login(error="That token is unknown or revoked.", next_path=next_path)
            return _html(page, 401)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            COOKIE,
            secret.strip() if isinstance(secret, str) else "",
            max_age=COOKIE_MAX_AGE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(LOGIN, status_code=303)
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response

    async def listing(request: Request) -> Response:
        kb = await signed_in(request)
        if kb is None:
            return to_login(request)
        query = request.query_params
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            return _html(render_message("Bad request", "limit must be a whole number"), 400)
        if not 1 <= limit <= MAX_LIMIT:
            return _html(render_message("Bad request", f"limit must be 1 to {MAX_LIMIT}"), 400)
        try:
            html = await anyio.to_thread.run_sync(
                lambda: kb.view_list_html(
                    outcome=query.get("outcome") or "failure",
                    domain=query.get("domain") or None,
                    limit=limit,
                    link="/view/{id}",
                    live=True,
                )
            )
        except Invalid as exc:
            return _html(render_message("Bad request", str(exc)), 400)
        return _html(html)

    async def run(request: Request) -> Response:
        kb = await signed_in(request)
        if kb is None:
            return to_login(request)
        experience_id = request.path_params["experience_id"]
        try:
            html = await anyio.to_thread.run_sync(
                lambda: kb.view_html(experience_id, link="/view/{id}")
            )
        except NotFound as exc:
            return _html(render_message("Not found", str(exc)), 404)
        except KBError as exc:
            return _html(render_message("Cannot show this run", str(exc)), 400)
        return _html(html)

    return [
        Route(LOGIN, login, methods=["GET", "POST"], name="view_login"),
        Route("/view/logout", logout, methods=["POST"], name="view_logout"),
        Route("/view", listing, methods=["GET"], name="view_list"),
        Route("/view/{experience_id}", run, methods=["GET"], name="view_run"),
    ]


__all__ = ["COOKIE", "view_routes"]
