"""Named, numbered schema migrations, recorded in the database they changed.

Each migration is a step from version N-1 to N; it runs in its own transaction
together with the row that records it in ``schema_migrations``, so a crash
leaves the database at a whole version. Released migrations are never edited:
a change is a new step. Tests migrate a blank database and a fixture database
of every earlier version (``tests/fixtures/store/schema_vN.sql``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from app.errors import HushchatError

log = logging.getLogger(__name__)


class SchemaError(HushchatError):
    """The database's schema is newer than this app, or a migration failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create_chats_and_messages",
        """
        CREATE TABLE chats (
            id              TEXT PRIMARY KEY,
            title           TEXT NOT NULL,
            title_source    TEXT NOT NULL DEFAULT 'default'
                            CHECK (title_source IN ('default', 'auto', 'user')),
            tier            TEXT NOT NULL,
            system_prompt   TEXT NOT NULL DEFAULT '',
            memory          TEXT NOT NULL DEFAULT '',
            provider        TEXT,
            model           TEXT,
            pinned          INTEGER NOT NULL DEFAULT 0,
            active_leaf_id  TEXT,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL,
            deleted_at      REAL
        );
        CREATE INDEX chats_by_activity ON chats (pinned DESC, updated_at DESC);

        CREATE TABLE messages (
            id                TEXT PRIMARY KEY,
            chat_id           TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
            parent_id         TEXT REFERENCES messages (id) ON DELETE SET NULL,
            role              TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content           TEXT NOT NULL,
            status            TEXT NOT NULL DEFAULT 'complete'
                              CHECK (status IN ('complete', 'partial', 'stopped', 'error')),
            error             TEXT,
            provider          TEXT,
            model             TEXT,
            prompt_tokens     INTEGER,
            completion_tokens INTEGER,
            created_at        REAL NOT NULL,
            first_token_at    REAL,
            finished_at       REAL,
            selected_at       REAL NOT NULL
        );
        CREATE INDEX messages_by_parent ON messages (chat_id, parent_id, created_at);
        """,
    ),
    Migration(
        2,
        "add_reasoning_and_full_text_search",
        """
        ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT '';

        CREATE VIRTUAL TABLE messages_fts USING fts5 (
            content, content = 'messages', content_rowid = 'rowid',
            tokenize = 'unicode61 remove_diacritics 2'
        );
        INSERT INTO messages_fts (rowid, content) SELECT rowid, content FROM messages;
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.rowid, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.rowid, old.content);
            INSERT INTO messages_fts (rowid, content) VALUES (new.rowid, new.content);
        END;

        CREATE VIRTUAL TABLE chats_fts USING fts5 (
            title, content = 'chats', content_rowid = 'rowid',
            tokenize = 'unicode61 remove_diacritics 2'
        );
        INSERT INTO chats_fts (rowid, title) SELECT rowid, title FROM chats;
        CREATE TRIGGER chats_fts_insert AFTER INSERT ON chats BEGIN
            INSERT INTO chats_fts (rowid, title) VALUES (new.rowid, new.title);
        END;
        CREATE TRIGGER chats_fts_delete AFTER DELETE ON chats BEGIN
            INSERT INTO chats_fts (chats_fts, rowid, title) VALUES ('delete', old.rowid, old.title);
        END;
        CREATE TRIGGER chats_fts_update AFTER UPDATE OF title ON chats BEGIN
            INSERT INTO chats_fts (chats_fts, rowid, title) VALUES ('delete', old.rowid, old.title);
            INSERT INTO chats_fts (rowid, title) VALUES (new.rowid, new.title);
        END;
        """,
    ),
    Migration(
        3,
        "add_move_state_and_timings",
        """
        ALTER TABLE chats ADD COLUMN move_state TEXT;
        ALTER TABLE messages ADD COLUMN duration_ms INTEGER;
        CREATE INDEX chats_moving ON chats (move_state) WHERE move_state IS NOT NULL;
        """,
    ),
    Migration(
        4,
        "add_sync_state",
        """
        CREATE TABLE sync_keys (
            key_id  TEXT PRIMARY KEY,
            tier    TEXT NOT NULL,
            epoch   INTEGER NOT NULL,
            secret  BLOB NOT NULL,
            state   TEXT NOT NULL CHECK (state IN ('current', 'next'))
        );
        CREATE TABLE sync_chat_keys (
            chat_id  TEXT PRIMARY KEY,
            key_id   TEXT NOT NULL,
            secret   BLOB NOT NULL,
            hlc      TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX sync_chat_keys_by_key ON sync_chat_keys (key_id);
        CREATE TABLE sync_settings (
            name   TEXT PRIMARY KEY,
            value  BLOB
        );
        CREATE TABLE sync_records (
            record_id         TEXT PRIMARY KEY,
            kind              TEXT NOT NULL,
            chat_id           TEXT,
            server_revision   INTEGER NOT NULL DEFAULT 0,
            server_deleted    INTEGER NOT NULL DEFAULT 0,
            dirty             INTEGER NOT NULL DEFAULT 0,
            local_deleted     INTEGER NOT NULL DEFAULT 0,
            pending_revision  INTEGER,
            pending_parent    INTEGER,
            pending_deleted   INTEGER,
            pending_key_id    TEXT,
            pending_payload   BLOB,
            state             TEXT
        );
        CREATE INDEX sync_records_dirty ON sync_records (dirty) WHERE dirty = 1;
        CREATE INDEX sync_records_pending ON sync_records (pending_revision)
            WHERE pending_revision IS NOT NULL;
        CREATE INDEX sync_records_by_chat ON sync_records (chat_id);
        CREATE TABLE sync_inbox (
            record_id        TEXT PRIMARY KEY,
            kind             TEXT NOT NULL,
            revision         INTEGER NOT NULL,
            parent_revision  INTEGER,
            deleted          INTEGER NOT NULL,
            key_id           TEXT NOT NULL,
            payload          BLOB NOT NULL,
            seq              INTEGER NOT NULL
        );
        CREATE TABLE sync_moves (chat_id TEXT PRIMARY KEY);
        CREATE TABLE sync_applying (id INTEGER PRIMARY KEY CHECK (id = 1));

        INSERT INTO sync_records (record_id, kind, chat_id, dirty)
            SELECT 'chatkey:' || id, 'chatkey', id, 1 FROM chats WHERE tier <> 'ephemeral';
        INSERT INTO sync_records (record_id, kind, chat_id, dirty)
            SELECT 'chat:' || id, 'chat', id, 1 FROM chats WHERE tier <> 'ephemeral';
        INSERT INTO sync_records (record_id, kind, chat_id, dirty)
            SELECT 'msg:' || m.id, 'message', m.chat_id, 1 FROM messages m
            JOIN chats c ON c.id = m.chat_id WHERE c.tier <> 'ephemeral';

        CREATE TRIGGER sync_chat_insert AFTER INSERT ON chats
        WHEN new.tier <> 'ephemeral' AND NOT EXISTS (SELECT 1 FROM sync_applying) BEGIN
            DELETE FROM sync_moves WHERE chat_id = new.id;
            INSERT INTO sync_records (record_id, kind, chat_id, dirty)
                VALUES ('chatkey:' || new.id, 'chatkey', new.id, 1)
                ON CONFLICT (record_id) DO UPDATE SET dirty = 1, local_deleted = 0;
            INSERT INTO sync_records (record_id, kind, chat_id, dirty)
                VALUES ('chat:' || new.id, 'chat', new.id, 1)
                ON CONFLICT (record_id) DO UPDATE SET dirty = 1, local_deleted = 0;
        END;
        CREATE TRIGGER sync_chat_update
        AFTER UPDATE OF title, title_source, system_prompt, memory, provider, model, pinned,
            active_leaf_id, move_state ON chats
        WHEN new.tier <> 'ephemeral' AND NOT EXISTS (SELECT 1 FROM sync_applying) BEGIN
            UPDATE sync_records SET dirty = 1 WHERE record_id = 'chat:' || new.id;
        END;
        CREATE TRIGGER sync_chat_delete AFTER DELETE ON chats
        WHEN old.tier <> 'ephemeral' AND NOT EXISTS (SELECT 1 FROM sync_applying) BEGIN
            DELETE FROM sync_records WHERE chat_id = old.id
                AND (EXISTS (SELECT 1 FROM sync_moves WHERE chat_id = old.id)
                     OR (server_revision = 0 AND pending_revision IS NULL));
            INSERT INTO sync_settings (name, value)
                SELECT 'rotate_pending', 1 FROM sync_records
                WHERE record_id = 'chatkey:' || old.id
                ON CONFLICT (name) DO UPDATE SET value = 1;
            INSERT INTO sync_settings (name, value)
                SELECT 'rotate_pending', 1 FROM sync_moves
                WHERE chat_id = old.id AND old.tier = 'standard'
                    AND EXISTS (SELECT 1 FROM sync_keys)
                ON CONFLICT (name) DO UPDATE SET value = 1;
            UPDATE sync_records SET dirty = 1, local_deleted = 1, state = NULL
                WHERE chat_id = old.id AND kind IN ('chat', 'chatkey');
        END;
        CREATE TRIGGER sync_message_insert AFTER INSERT ON messages
        WHEN NOT EXISTS (SELECT 1 FROM sync_applying)
            AND EXISTS (SELECT 1 FROM chats WHERE id = new.chat_id AND tier <> 'ephemeral') BEGIN
            INSERT INTO sync_records (record_id, kind, chat_id, dirty)
                VALUES ('msg:' || new.id, 'message', new.chat_id, 1)
                ON CONFLICT (record_id) DO UPDATE SET dirty = 1, local_deleted = 0;
        END;
        CREATE TRIGGER sync_message_update
        AFTER UPDATE OF content, reasoning, status, error ON messages
        WHEN NOT EXISTS (SELECT 1 FROM sync_applying) BEGIN
            UPDATE sync_records SET dirty = 1 WHERE record_id = 'msg:' || new.id;
        END;
        CREATE TRIGGER sync_message_delete AFTER DELETE ON messages
        WHEN NOT EXISTS (SELECT 1 FROM sync_applying) BEGIN
            DELETE FROM sync_records WHERE record_id = 'msg:' || old.id
                AND (EXISTS (SELECT 1 FROM sync_moves WHERE chat_id = old.chat_id)
                     OR (server_revision = 0 AND pending_revision IS NULL));
            UPDATE sync_records SET dirty = 1, local_deleted = 1,
                state = json_object('parent_id', old.parent_id)
                WHERE record_id = 'msg:' || old.id;
        END;
        """,
    ),
    Migration(
        5,
        "add_chat_params",
        """
        ALTER TABLE chats ADD COLUMN params TEXT NOT NULL DEFAULT '{}';

        DROP TRIGGER sync_chat_update;
        CREATE TRIGGER sync_chat_update
        AFTER UPDATE OF title, title_source, system_prompt, memory, provider, model, pinned,
            active_leaf_id, move_state, params ON chats
        WHEN new.tier <> 'ephemeral' AND NOT EXISTS (SELECT 1 FROM sync_applying) BEGIN
            UPDATE sync_records SET dirty = 1 WHERE record_id = 'chat:' || new.id;
        END;
        """,
    ),
    Migration(
        6,
        "add_attachments_and_blobs",
        # Content-addressed blobs (sha256), stored as numbered chunks so a large file
        # is never one value in memory. Chunks live in a rowid table: SQLite advises
        # against WITHOUT ROWID for rows holding large BLOBs. A blob is written under
        # a provisional name and renamed to its hash when the last chunk is in, inside
        # the transaction that adds its attachment row (see app/store/blobs.py).
        # Deleting a message cascades to its attachments; the trigger then drops a
        # blob (and its chunks) that no attachment references any more.
        """
        CREATE TABLE blobs (
            id          INTEGER PRIMARY KEY,
            sha256      TEXT NOT NULL UNIQUE,
            size        INTEGER NOT NULL,
            chunk_size  INTEGER NOT NULL,
            created_at  REAL NOT NULL
        );
        CREATE TABLE blob_chunks (
            blob_id  INTEGER NOT NULL REFERENCES blobs (id),
            idx      INTEGER NOT NULL,
            data     BLOB NOT NULL,
            PRIMARY KEY (blob_id, idx)
        );
        CREATE TABLE attachments (
            id          TEXT PRIMARY KEY,
            message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            chat_id     TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
            sha256      TEXT NOT NULL REFERENCES blobs (sha256),
            name        TEXT NOT NULL,
            media_type  TEXT NOT NULL,
            size        INTEGER NOT NULL,
            position    INTEGER NOT NULL,
            created_at  REAL NOT NULL
        );
        CREATE INDEX attachments_by_message ON attachments (message_id, position);
        CREATE INDEX attachments_by_chat ON attachments (chat_id);
        CREATE INDEX attachments_by_blob ON attachments (sha256);
        CREATE TRIGGER attachments_release_blob AFTER DELETE ON attachments
        WHEN NOT EXISTS (SELECT 1 FROM attachments WHERE sha256 = old.sha256) BEGIN
            DELETE FROM blob_chunks
                WHERE blob_id = (SELECT id FROM blobs WHERE sha256 = old.sha256);
            DELETE FROM blobs WHERE sha256 = old.sha256;
        END;
        """,
    ),
    Migration(
        7,
        "add_attachment_chunks_and_vectors",
        # Retrieval over long attachments (app/store/chunks.py): an attachment's text
        # chunks with their location labels, a BM25 index over them (FTS5, external
        # content, kept in step by triggers like the message search), and one embedding
        # vector per chunk as a plain float32 BLOB (no virtual table: the database stays
        # readable without the sqlite-vec extension). Deleting an attachment (with its
        # message or chat) cascades to its chunks and their vectors.
        """
        CREATE TABLE attachment_chunks (
            id             INTEGER PRIMARY KEY,
            attachment_id  TEXT NOT NULL REFERENCES attachments (id) ON DELETE CASCADE,
            chat_id        TEXT NOT NULL,
            idx            INTEGER NOT NULL,
            label          TEXT NOT NULL,
            text           TEXT NOT NULL
        );
        CREATE INDEX attachment_chunks_by_attachment ON attachment_chunks (attachment_id, idx);
        CREATE INDEX attachment_chunks_by_chat ON attachment_chunks (chat_id);
        CREATE VIRTUAL TABLE attachment_chunks_fts USING fts5 (
            text, content = 'attachment_chunks', content_rowid = 'id',
            tokenize = 'unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER attachment_chunks_fts_insert AFTER INSERT ON attachment_chunks BEGIN
            INSERT INTO attachment_chunks_fts (rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER attachment_chunks_fts_delete AFTER DELETE ON attachment_chunks BEGIN
            INSERT INTO attachment_chunks_fts (attachment_chunks_fts, rowid, text)
            VALUES ('delete', old.id, old.text);
        END;
        CREATE TRIGGER attachment_chunks_fts_update AFTER UPDATE OF text ON attachment_chunks
        BEGIN
            INSERT INTO attachment_chunks_fts (attachment_chunks_fts, rowid, text)
            VALUES ('delete', old.id, old.text);
            INSERT INTO attachment_chunks_fts (rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TABLE chunk_vectors (
            chunk_id  INTEGER PRIMARY KEY REFERENCES attachment_chunks (id) ON DELETE CASCADE,
            model     TEXT NOT NULL,
            vector    BLOB NOT NULL
        );
        """,
    ),
    Migration(
        8,
        "add_message_sources",
        # An answer's excerpt labels ("report.pdf, p. 3"), a JSON list of strings.
        """
        ALTER TABLE messages ADD COLUMN sources TEXT NOT NULL DEFAULT '[]';
        """,
    ),
    Migration(
        9,
        "add_attachment_sync",
        # Attachments sync as records (app/sync/records.py): "att:<id>" for the metadata,
        # "attpart:<id>:<n>" for the bytes (those rows are made when the metadata is
        # sealed). A deleted attachment leaves tombstones, like a message. Parts received
        # before the rest of their attachment wait in sync_attachment_parts; the
        # attachment appears once all are there and their sha256 matches.
        """
        CREATE TABLE sync_attachment_parts (
            attachment_id  TEXT NOT NULL,
            idx            INTEGER NOT NULL,
            chat_id        TEXT NOT NULL,
            data           BLOB NOT NULL,
            PRIMARY KEY (attachment_id, idx)
        );
        CREATE INDEX sync_attachment_parts_by_chat ON sync_attachment_parts (chat_id);
        INSERT INTO sync_records (record_id, kind, chat_id, dirty)
            SELECT 'att:' || a.id, 'attachment', a.chat_id, 1 FROM attachments a
            JOIN chats c ON c.id = a.chat_id WHERE c.tier <> 'ephemeral';
        CREATE TRIGGER sync_attachment_insert AFTER INSERT ON attachments
        WHEN NOT EXISTS (SELECT 1 FROM sync_applying)
            AND EXISTS (SELECT 1 FROM chats WHERE id = new.chat_id AND tier <> 'ephemeral') BEGIN
            INSERT INTO sync_records (record_id, kind, chat_id, dirty)
                VALUES ('att:' || new.id, 'attachment', new.chat_id, 1)
                ON CONFLICT (record_id) DO UPDATE SET dirty = 1, local_deleted = 0;
        END;
        CREATE TRIGGER sync_attachment_delete AFTER DELETE ON attachments
        WHEN NOT EXISTS (SELECT 1 FROM sync_applying) BEGIN
            DELETE FROM sync_records
                WHERE (record_id = 'att:' || old.id
                       OR (record_id > 'attpart:' || old.id || ':'
                           AND record_id < 'attpart:' || old.id || ';'))
                AND (EXISTS (SELECT 1 FROM sync_moves WHERE chat_id = old.chat_id)
                     OR (server_revision = 0 AND pending_revision IS NULL));
            UPDATE sync_records SET dirty = 1, local_deleted = 1, state = NULL
                WHERE record_id = 'att:' || old.id
                   OR (record_id > 'attpart:' || old.id || ':'
                       AND record_id < 'attpart:' || old.id || ';');
        END;
        """,
    ),
)

LATEST = MIGRATIONS[-1].version


def current_version(conn: Any) -> int:
    """The schema version recorded in ``conn`` (0 for a blank database)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: Any, target: int = LATEST) -> list[Migration]:
    """Apply every pending migration up to ``target``; returns the ones applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    version = current_version(conn)
    if version > LATEST:
        raise SchemaError(
            f"this chat database has schema version {version}, newer than this Hushchat "
            f"understands ({LATEST}); update Hushchat to open it"
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= version or migration.version > target:
            continue
        log.info("migrating chat database to version %d (%s)", migration.version, migration.name)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            conn.execute("COMMIT")
        except Exception as error:
            conn.execute("ROLLBACK")
            raise SchemaError(
                f"upgrading the chat database to version {migration.version} "
                f"({migration.name}) failed: {error}; the database is unchanged"
            ) from error
        applied.append(migration)
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    current: list[str] = []
    in_trigger = False
    for line in sql.strip().splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        current.append(line)
        upper = stripped.upper()
        if upper.startswith("CREATE TRIGGER"):
            in_trigger = True
        if in_trigger:
            if upper == "END;":
                statements.append("\n".join(current))
                current, in_trigger = [], False
        elif stripped.endswith(";"):
            statements.append("\n".join(current))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
