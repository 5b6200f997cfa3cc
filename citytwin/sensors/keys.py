"""Machine API keys: scoped to Datastreams, hashed at rest, revocable.

A key is ``ctk_<prefix>_<secret>`` with 32 random bytes of secret. Only the SHA-256 of the whole
token is stored: for a high-entropy random token a fast hash is as safe as Argon2 (nothing to
brute-force), and it keeps per-request verification cheap. The prefix finds the row.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

import sqlalchemy as sa

from citytwin.security import role_rank
from citytwin.sensors.schema import sta_api_keys, sta_datastreams

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
_TOKEN = re.compile(r"^ctk_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,})$")


class KeyError_(ValueError):
    """A key cannot be created or changed as asked; the message names the field."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(conn: sa.Connection, *, name: str, datastreams: list[int], role: str = "viewer") -> tuple[int, str]:
    """Create a key; returns (id, token). The token is shown once and never stored in clear."""
    if not _NAME.match(name or ""):
        raise KeyError_("name: 2–64 characters of letters, digits, _ . @ -")
    try:
        role_rank(role)
    except ValueError as exc:
        raise KeyError_(str(exc)) from None
    ids = sorted({int(d) for d in datastreams})
    if ids:
        found = set(conn.execute(sa.select(sta_datastreams.c.id).where(sta_datastreams.c.id.in_(ids))).scalars())
        missing = [d for d in ids if d not in found]
        if missing:
            raise KeyError_(f"datastreams: no Datastream with id {missing[0]}")
    if conn.execute(sa.select(sta_api_keys.c.id).where(sta_api_keys.c.name == name)).first():
        raise KeyError_(f"name: a key named {name!r} exists already")
    prefix = "".join(secrets.choice("abcdefghijkmnopqrstuvwxyz23456789") for _ in range(12))
    token = f"ctk_{prefix}_{secrets.token_urlsafe(32)}"
    kid = conn.execute(sta_api_keys.insert().values(
        name=name, prefix=prefix, secret_sha256=_digest(token), role=role, datastreams=ids,
        created_at=datetime.now(UTC), revoked_at=None,
    )).inserted_primary_key[0]
    return int(kid), token


def list_keys(conn: sa.Connection) -> list[dict]:
    t = sta_api_keys
    rows = conn.execute(sa.select(t.c.id, t.c.name, t.c.prefix, t.c.role, t.c.datastreams, t.c.created_at,
                                  t.c.revoked_at).order_by(t.c.id)).mappings()
    return [dict(r) for r in rows]


def revoke_key(conn: sa.Connection, key_id: int) -> bool:
    """Revoke a key; False when no active key has that id."""
    t = sta_api_keys
    res = conn.execute(t.update().where(t.c.id == key_id, t.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC)))
    return res.rowcount == 1


def verify_key(conn: sa.Connection, token: str) -> dict | None:
    """The active key row for ``token``, or None."""
    m = _TOKEN.match(token or "")
    if not m:
        return None
    row = conn.execute(sa.select(sta_api_keys).where(sta_api_keys.c.prefix == m.group(1))).mappings().first()
    if row is None or row["revoked_at"] is not None:
        return None
    if not hmac.compare_digest(row["secret_sha256"], _digest(token)):
        return None
    return dict(row)
