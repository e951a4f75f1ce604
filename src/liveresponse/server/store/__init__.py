"""The store: SQLAlchemy 2 (async) over SQLite or PostgreSQL, schema by Alembic migrations."""
