"""Persistence: one interface over SQLite and PostgreSQL (SQLAlchemy Core + Alembic)."""

from citytwin.store.db import connect, make_engine, migrate

__all__ = ["connect", "make_engine", "migrate"]
