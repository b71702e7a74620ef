"""Who may call what: API tokens with scopes (``ingest``, ``query``, ``admin``).

A token is taken from ``Authorization: Bearer TOKEN``, or as the password of
HTTP basic auth with any user name (what Loki clients and shippers send).
Tokens are compared in constant time. No token: 401; a token without the
scope: 403. With no tokens configured, everything is allowed.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from tidal.server.config import ServerConfig

__all__ = ["require"]


def require(connection: HTTPConnection, scope: str) -> None:
    """Raise 401/403 unless the request carries a token with ``scope``."""
    config: ServerConfig = connection.app.state.config
    if config.open:
        return
    presented = _presented(connection)
    if presented is None:
        raise HTTPException(401, "a token is needed: Authorization: Bearer TOKEN, or basic "
                                 "auth with the token as password",
                            headers={"WWW-Authenticate": 'Bearer realm="tidal", '
                                                         'Basic realm="tidal"'})
    found = None
    for token in config.tokens:  # (every token compared, each in constant time)
        if hmac.compare_digest(token.token.encode(), presented.encode()):
            found = token
    if found is None:
        raise HTTPException(401, "unknown token",
                            headers={"WWW-Authenticate": 'Bearer realm="tidal"'})
    if scope not in found.scopes:
        raise HTTPException(403, f"this token lacks the {scope!r} scope")


def _presented(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    kind, _, value = header.partition(" ")
    if kind.lower() in ("bearer", "apikey") and value.strip():  # (ApiKey: Elasticsearch clients)
        return value.strip()
    if kind.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    token = connection.query_params.get("token")  # (browsers' EventSource/WebSocket)
    return token or None
