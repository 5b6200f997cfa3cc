"""Alembic environment: runs on the connection handed over by :func:`citytwin.store.migrate`."""

from alembic import context

import citytwin.crowd.schema  # noqa: F401  (registers the crowd tables on metadata)
import citytwin.sensors.schema  # noqa: F401  (registers the sensor tables on metadata)
from citytwin.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through citytwin.store.migrate
    raise RuntimeError("run migrations through citytwin.store.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
