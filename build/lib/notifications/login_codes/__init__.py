"""Member login by one-time code (see operations.py and docs/architecture.md)."""
