"""The manager's database: SQLAlchemy 2 models and the Alembic migrations shipped with them."""
