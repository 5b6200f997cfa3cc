"""Users, roles, Argon2 password hashes and signed bearer tokens (no web framework here)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import jwt
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from citytwin.store.schema import users

#: Roles in increasing order of power.
ROLES = ("viewer", "analyst", "operator", "admin")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
JWT_ALGORITHM = "HS256"


class AuthError(Exception):
    """Authentication failed (bad credentials or token)."""


class UserError(ValueError):
    """A user cannot be created or changed as asked; the message names the field."""


def role_rank(role: str) -> int:
    """Position of ``role`` in :data:`ROLES`; raises UserError for an unknown role."""
    try:
        return ROLES.index(role)
    except ValueError:
        raise UserError(f"role: unknown role {role!r}; accepted: {', '.join(ROLES)}") from None


def has_role(actual: str, required: str) -> bool:
    """True when ``actual`` is at least ``required``."""
    return role_rank(actual) >= role_rank(required)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(conn: sa.Connection, *, name: str, password: str, role: str) -> int:
    """Create a user with an Argon2id hash of the password; never stores it in clear."""
    role_rank(role)
    if not _NAME.match(name or ""):
        raise UserError("name: 2–64 characters of letters, digits, _ . @ -")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first() is not None:
        raise UserError(f"name: a user named {name!r} exists already")
    return int(
        conn.execute(
            users.insert().values(
                name=name, password_hash=hash_password(password), role=role, created_at=datetime.now(UTC)
            )
        ).inserted_primary_key[0]
    )


def list_users(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(sa.select(users.c.id, users.c.name, users.c.role, users.c.created_at).order_by(users.c.id))
    return [dict(r._mapping) for r in rows]


def authenticate(conn: sa.Connection, *, name: str, password: str) -> dict:
    """Return ``{"id", "name", "role"}`` or raise AuthError (constant-time-ish on unknown users)."""
    row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()
    if row is None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        raise AuthError("incorrect user name or password")
    try:
        _hasher.verify(row["password_hash"], password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise AuthError("incorrect user name or password") from None
    return {"id": row["id"], "name": row["name"], "role": row["role"]}


def issue_token(*, user: dict, secret: str, minutes: int) -> tuple[str, int]:
    """A signed HS256 token carrying the user's name and role; returns (token, expires_in_s)."""
    now = datetime.now(UTC)
    payload = {
        "sub": user["name"], "role": user["role"], "iat": now,
        "exp": now + timedelta(minutes=minutes), "typ": "user",
    }
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM), minutes * 60


def decode_token(token: str, *, secret: str) -> dict:
    try:
        claims = jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    if claims.get("role") not in ROLES:
        raise AuthError("invalid token: unknown role")
    return claims


def generate_password() -> str:
    """A random password for the demo administrator (printed once, stored only hashed)."""
    return secrets.token_urlsafe(18)
