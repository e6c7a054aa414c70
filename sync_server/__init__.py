"""Hushchat's optional self-hosted sync server (FastAPI)."""

__version__ = "0.1.0"
