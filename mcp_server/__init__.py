"""The MCP server of the store: a thin FastMCP shell over :class:`kb.KnowledgeBase`.

>>> from mcp_server import create_server
>>> server = create_server(store="./store")
>>> server.run()  # stdio
"""

from __future__ import annotations

from mcp_server.server import create_server, serve

__all__ = ["create_server", "serve"]
