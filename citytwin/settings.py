"""Typed settings, read from the environment (prefix ``CITYTWIN_``).

Secrets are refused when left at an example value. When no secret key is given in the
environment, one is generated once with :mod:`secrets` into ``<data_dir>/secret_key``
(mode 0600) so that tokens survive a restart; it is never printed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Values that appear in examples and documentation; a deployment using one is refused.
EXAMPLE_SECRETS = frozenset(
    {"changeme", "change-me", "secret", "example", "please-change", "CHANGE_ME", "xxx", ""}
)


class SettingsError(ValueError):
    """A setting is missing or has a refused value."""


def default_data_dir() -> Path:
    """The data directory: ``$CITYTWIN_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("CITYTWIN_DATA_DIR", "data")).resolve()


class Settings(BaseSettings):
    """Settings of one twin instance.

    Examples
    --------
    >>> s = Settings(data_dir="/tmp/ct", secret_key="a-long-random-value-for-tests-only")
    >>> s.resolved_database_url().startswith("sqlite:///")
    True
    """

    model_config = SettingsConfigDict(env_prefix="CITYTWIN_", env_file=None, extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    secret_key: SecretStr | None = None
    token_minutes: int = Field(default=12 * 60, ge=1, le=7 * 24 * 60)
    mqtt_url: str | None = None  #: e.g. ``mqtt://127.0.0.1:1883``; None = HTTP ingest only
    #: MQTT Observations must carry an API key (MQTT 5 user property ``authorization``); turn off
    #: only behind a broker that authorises each publisher's topics itself
    mqtt_require_key: bool = True
    #: the city's school-holiday region as the ``holidays`` package names it (e.g. ``Midden``
    #: for The Hague, ``BE`` for Berlin); None where the country needs none or has no calendar
    school_region: str | None = None
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    @field_validator("secret_key")
    @classmethod
    def _refuse_example_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        raw = v.get_secret_value()
        if raw.strip() in EXAMPLE_SECRETS or raw.lower().startswith("change"):
            raise ValueError(
                "CITYTWIN_SECRET_KEY is left at an example value; set a random value "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if len(raw) < 32:
            raise ValueError("CITYTWIN_SECRET_KEY must be at least 32 characters long")
        return v

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: ``CITYTWIN_DATABASE_URL`` or a SQLite file in ``data_dir``."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{self.data_dir / 'citytwin.sqlite'}"

    def resolved_secret_key(self) -> str:
        """The signing key for tokens; generated once into the data directory if unset."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        os.replace(tmp, path)
        return key


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides; raise SettingsError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise SettingsError(str(exc)) from exc
