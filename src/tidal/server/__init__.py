"""``tidal serve``: the store as an HTTP service (Starlette on uvicorn).

The routes are glue: each calls the same :class:`~tidal.Store` methods that
Python users call. :func:`~tidal.server.app.create_app` builds the ASGI app
for a store and a :class:`~tidal.server.config.ServerConfig`.
"""

from tidal.server.app import create_app
from tidal.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
