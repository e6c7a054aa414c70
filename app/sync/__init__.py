"""Multi-device sync: record encryption, the sync engine, sign-in (see docs/sync.md)."""
