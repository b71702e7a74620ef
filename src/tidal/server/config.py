"""Server settings: defaults, then a TOML file, then ``TIDAL_*`` environment
variables (each overrides the one before).

```toml
host = "127.0.0.1"
port = 3100
store = "./tidal-data"
max_body_bytes = 67108864
backpressure_wait_s = 5.0

[[auth.tokens]]
token = "s3cret"
scopes = ["ingest", "query"]
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tidal.errors import ConfigError

__all__ = ["SCOPES", "ServerConfig", "Token"]

SCOPES = ("ingest", "query", "admin")
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Token:
    """An API token and the scopes it grants."""

    token: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class ServerConfig:
    """How ``tidal serve`` runs.

    Attributes:
        host: the address to bind (with no tokens configured: loopback only).
        port: the TCP port.
        store: the store directory.
        max_body_bytes: the largest request body accepted (after decompression
            too); larger ones get 413.
        backpressure_wait_s: how long an ingest request waits for room when the
            store is at its memory limit before it is answered 429 with Retry-After.
        tokens: the API tokens; none: no authentication (loopback only).
        loki_line_field: the field Loki's query API reads as the log line (None:
            the first of ``message``, ``body``, ``line``, ``msg``, ``log``).
        loki_label_fields: the fields it reads as labels (None: every text field).
        loki_max_entries: the most log lines one Loki query may ask for (``limit``;
            Loki's ``max_entries_limit_per_query``, 5000 by default).
    """

    host: str = LOOPBACK
    port: int = 3100
    store: str = "./tidal-data"
    max_body_bytes: int = 64 << 20
    backpressure_wait_s: float = 5.0
    tokens: tuple[Token, ...] = field(default_factory=tuple)
    loki_line_field: str | None = None
    loki_label_fields: tuple[str, ...] | None = None
    loki_max_entries: int = 5000

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, not {self.port!r}", field="port")
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise ConfigError("max_body_bytes must be a whole number >= 1",
                              field="max_body_bytes")
        if (isinstance(self.backpressure_wait_s, bool)
                or not isinstance(self.backpressure_wait_s, int | float)
                or not 0 <= self.backpressure_wait_s <= 3600):
            raise ConfigError("backpressure_wait_s must be a number of seconds, 0 to 3600",
                              field="backpressure_wait_s")
        if (isinstance(self.loki_max_entries, bool) or not isinstance(self.loki_max_entries, int)
                or self.loki_max_entries < 1):
            raise ConfigError("loki.max_entries must be a whole number >= 1",
                              field="loki.max_entries")
        for token in self.tokens:
            if not token.token:
                raise ConfigError("a token must not be empty", field="auth.tokens")
            unknown = token.scopes - set(SCOPES)
            if unknown:
                raise ConfigError(f"unknown scopes {sorted(unknown)}: the scopes are "
                                  f"{', '.join(SCOPES)}", field="auth.tokens")

    @property
    def open(self) -> bool:
        """No tokens: every request is allowed (so the server binds to loopback)."""
        return not self.tokens

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then the TOML file at ``path``, then ``TIDAL_HOST``,
        ``TIDAL_PORT``, ``TIDAL_STORE``, ``TIDAL_MAX_BODY_BYTES``,
        ``TIDAL_BACKPRESSURE_WAIT_S`` and ``TIDAL_TOKENS`` (``token:scope+scope,...``),
        then ``overrides`` (None values are skipped)."""
        values: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read the config {path}: {exc}",
                                  field="config") from exc
            values.update({k: data[k] for k in ("host", "port", "store", "max_body_bytes",
                                                  "backpressure_wait_s") if k in data})
            auth = data.get("auth", {})
            tokens = auth.get("tokens", []) if isinstance(auth, dict) else None
            if not isinstance(tokens, list):
                raise ConfigError("auth.tokens must be a list of tables", field="auth.tokens")
            values["tokens"] = tuple(_token(t) for t in tokens)
            loki = data.get("loki", {})
            if not isinstance(loki, dict):
                raise ConfigError("[loki] must be a table", field="loki")
            if "line_field" in loki:
                values["loki_line_field"] = str(loki["line_field"])
            if "label_fields" in loki:
                if not isinstance(loki["label_fields"], list):
                    raise ConfigError("loki.label_fields must be a list of field names",
                                      field="loki.label_fields")
                values["loki_label_fields"] = tuple(map(str, loki["label_fields"]))
            if "max_entries" in loki:
                values["loki_max_entries"] = loki["max_entries"]
        env = os.environ if env is None else env
        for name, key, kind in (("TIDAL_HOST", "host", str), ("TIDAL_PORT", "port", int),
                                ("TIDAL_STORE", "store", str),
                                ("TIDAL_MAX_BODY_BYTES", "max_body_bytes", int),
                                ("TIDAL_BACKPRESSURE_WAIT_S", "backpressure_wait_s", float)):
            if name in env:
                try:
                    values[key] = kind(env[name])
                except ValueError as exc:
                    raise ConfigError(f"{name} must be {kind.__name__}", field=key) from exc
        if "TIDAL_TOKENS" in env:
            values["tokens"] = tuple(_env_token(t) for t in env["TIDAL_TOKENS"].split(",")
                                     if t.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        if config.open and config.host != LOOPBACK:
            config = replace(config, host=LOOPBACK)  # (said at start-up by `serve`)
        return config


def _token(table: object) -> Token:
    if not isinstance(table, dict) or not isinstance(table.get("token"), str):
        raise ConfigError("each [[auth.tokens]] needs token = \"...\"", field="auth.tokens")
    scopes = table.get("scopes", list(SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ConfigError("scopes must be a list of names", field="auth.tokens")
    return Token(table["token"], frozenset(scopes))


def _env_token(text: str) -> Token:
    token, _, scopes = text.strip().partition(":")
    return Token(token, frozenset(scopes.split("+")) if scopes else frozenset(SCOPES))
