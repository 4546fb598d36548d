"""The data's shape: SQLAlchemy models, Alembic migrations and JSON Schemas of inbound events."""
