"""Alembic environment: runs on the connection the store hands over (store.migrate)."""

from __future__ import annotations

from alembic import context

from liveresponse.server.store import (
    intel_models,  # noqa: F401 - registers its tables on Base
    library_models,  # noqa: F401 - registers its tables on Base
    transfer_models,  # noqa: F401 - registers its tables on Base
)
from liveresponse.server.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
