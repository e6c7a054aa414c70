"""Chat storage: the schema and its migrations, repositories for chats and
messages (with versions), full-text search, and export/import.

The store works on any DB-API connection of the ``sqlcipher3`` (or ``sqlite3``)
driver: the vault's SQLCipher databases for Standard and Private chats, and an
in-memory database for Ephemeral chats. Calls are blocking; the chat service
runs them on its database thread.
"""
