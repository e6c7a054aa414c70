"""Tests of the sync server."""
