"""The HTTP API: an app factory, authentication and one router module per domain."""

from citytwin.api.app import create_app

__all__ = ["create_app"]
