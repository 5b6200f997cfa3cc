"""Health check (no authentication)."""

import sqlalchemy as sa
from fastapi import APIRouter, Request

from citytwin import __version__

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
def health(request: Request) -> dict:
    """Liveness and database reachability; needs no token."""
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        db = "ok"
    except Exception as exc:  # pragma: no cover - depends on the database
        db = f"error: {type(exc).__name__}"
    return {"status": "ok" if db == "ok" else "degraded", "version": __version__, "database": db}
