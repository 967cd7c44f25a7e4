"""``resources/list``: the caller's skills and most recent experiences, one resource each.

Listed per call for the caller's namespace (the token's over HTTP), so that a client can browse
what it may read; reading goes through the ``skill://{name}`` and ``experience://{id}`` templates.
Whole documents keep their own content and MIME type (a SKILL.md, an experience as JSON).
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from fastmcp.resources import Resource
from fastmcp.server.providers import Provider
from fastmcp.utilities.components import FastMCPComponent
from fastmcp.utilities.versions import VersionSpec

from kb.errors import KBError
from kb.retrieval import clip

RECENT = 100
"""Experiences listed, newest first (the list is paged by the server)."""
SKILLS = 1_000


class NamespaceResources(Provider):
    """Lists skills and recent experiences of the caller's namespace."""

    async def _list_resources(self) -> Sequence[Resource]:
        from mcp_server.hub import current_hub

        try:
            kb = current_hub().current()
        except KBError:  # no token: nothing to list
            return []

        def read() -> list[Resource]:
            entries = [
                (
                    f"skill://{skill.name}",
                    skill.name,
                    f"skill ({skill.status.value}): {clip(skill.description, 100)}",
                    "text/markdown",
                )
                for skill in kb.list_skills(limit=SKILLS)
            ]
            entries += [
                (
                    f"experience://{exp.id}",
                    exp.id,
                    f"experience ({exp.outcome.value}): {clip(exp.task, 100)}",
                    "application/json",
                )
                for exp in kb.list_experiences(limit=RECENT)
            ]
            listed = []
            for uri, name, description, mime in entries:
                try:
                    listed.append(
                        Resource(uri=uri, name=name, description=description, mime_type=mime)
                    )
                except ValueError:  # an imported id that is no URI: readable by tool only
                    continue
            return listed

        return await anyio.to_thread.run_sync(read)

    async def _get_resource(self, uri: str, version: VersionSpec | None = None) -> Resource | None:
        return None  # reads go through the templates, which check the namespace

    async def get_tasks(self) -> Sequence[FastMCPComponent]:
        return []  # listed per caller, never background tasks (and no caller at start-up)


__all__ = ["NamespaceResources"]
