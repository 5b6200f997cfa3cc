"""FastAPI dependencies: the engine, the current principal and role checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from citytwin import security

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


@dataclass
class Principal:
    """Who is calling: a user (with a role) or a machine API key (with scoped Datastreams)."""

    name: str
    role: str
    kind: str = "user"  # user | apikey
    datastreams: frozenset[int] | None = field(default=None)  # for API keys


def get_engine(request: Request) -> sa.Engine:
    return request.app.state.engine


def get_conn(request: Request) -> Iterator[sa.Connection]:
    """A connection in one transaction for the request: committed on success."""
    with request.app.state.engine.begin() as conn:
        yield conn


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def current_principal(request: Request, token: str | None = Depends(oauth2_scheme)) -> Principal:
    """Resolve the bearer token (user token, or an authenticator registered by other domains)."""
    if token is None and request.query_params.get("access_token"):
        token = request.query_params["access_token"]  # for EventSource, which cannot set headers
    authenticators = getattr(request.app.state, "authenticators", [])
    if token is None:
        for auth in authenticators:
            p = auth(request, None)
            if p is not None:
                return p
        raise _unauthorized("not authenticated: send a bearer token from POST /api/auth/token")
    try:
        claims = security.decode_token(token, secret=request.app.state.secret_key)
        return Principal(name=claims["sub"], role=claims["role"])
    except security.AuthError as exc:
        for auth in authenticators:
            p = auth(request, token)
            if p is not None:
                return p
        raise _unauthorized(str(exc)) from exc


def require_role(role: str) -> Callable[..., Principal]:
    """Dependency factory: the caller must be a user with at least ``role``."""
    security.role_rank(role)

    def _check(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.kind != "user" or not security.has_role(principal.role, role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"requires role {role} or higher")
        return principal

    return _check
