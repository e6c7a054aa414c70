"""Alembic migrations of the sync server's database (numbered, recorded in the DB)."""
