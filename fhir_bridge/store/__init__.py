"""Persistence: one ResourceStore interface, SQLite and PostgreSQL engines, search indexes."""
