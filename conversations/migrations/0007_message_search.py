"""An index for searching message text (conversations/sidebar.py), one per database.

SQLite: an FTS5 table with the trigram tokenizer over messages' content (external
content: the text is stored once, in the messages table), kept in step by triggers.
Answers are indexed once they stop streaming, so checkpoints (every second while an
answer streams) cost nothing here. Substring queries of 3+ characters use it.

PostgreSQL: a trigram GIN index (pg_trgm) on UPPER(content), which is what Django's
`icontains` compares, for finished messages. Creating the extension needs the CREATE
privilege on the database (pg_trgm is a trusted extension); without it, search still
works, by scanning.

Django knows neither. A later migration that rebuilds the messages table on SQLite (most
AlterFields on Message do) drops the triggers and must create them again;
tests/test_search.py checks that they exist and that the queries use both indexes.
"""

import logging

from django.db import migrations

log = logging.getLogger(__name__)

FTS = "conversations_message_fts"
SQLITE_UP = [
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(content, content='conversations_message', content_rowid='id', "
    "tokenize='trigram')",
    f"""CREATE TRIGGER {FTS}_insert AFTER INSERT ON conversations_message WHEN new.status != 'streaming' BEGIN
        INSERT INTO {FTS}(rowid, content) VALUES (new.id, new.content);
    END""",
    f"""CREATE TRIGGER {FTS}_delete AFTER DELETE ON conversations_message WHEN old.status != 'streaming' BEGIN
        INSERT INTO {FTS}({FTS}, rowid, content) VALUES ('delete', old.id, old.content);
    END""",
    # One trigger, so the old text leaves the index before the new one enters.
    f"""CREATE TRIGGER {FTS}_update AFTER UPDATE OF content, status ON conversations_message BEGIN
        INSERT INTO {FTS}({FTS}, rowid, content) SELECT 'delete', old.id, old.content WHERE old.status != 'streaming';
        INSERT INTO {FTS}(rowid, content) SELECT new.id, new.content WHERE new.status != 'streaming';
    END""",
    f"INSERT INTO {FTS}(rowid, content) SELECT id, content FROM conversations_message WHERE status != 'streaming'",
]
SQLITE_DOWN = [
    f"DROP TRIGGER IF EXISTS {FTS}_insert",
    f"DROP TRIGGER IF EXISTS {FTS}_delete",
    f"DROP TRIGGER IF EXISTS {FTS}_update",
    f"DROP TABLE IF EXISTS {FTS}",
]
POSTGRES_INDEX = (
    "CREATE INDEX message_content_trgm ON conversations_message USING gin (UPPER(content) gin_trgm_ops) "
    "WHERE status <> 'streaming'"
)


def up(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "sqlite":
        for statement in SQLITE_UP:
            schema_editor.execute(statement)
    elif connection.vendor == "postgresql":
        try:
            with connection.cursor() as cursor:
                cursor.execute("SAVEPOINT chatsite_trgm")
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                cursor.execute("RELEASE SAVEPOINT chatsite_trgm")
        except Exception as exc:  # no privilege: search scans instead
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK TO SAVEPOINT chatsite_trgm")
            log.warning("pg_trgm could not be created (%s): message search will not be indexed.", exc)
            return
        schema_editor.execute(POSTGRES_INDEX)


def down(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_DOWN:
            schema_editor.execute(statement)
    elif schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS message_content_trgm")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0006_message_tree")]
    operations = [migrations.RunPython(up, down)]
