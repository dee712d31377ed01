"""`portcullis:auth/store` (wit/store.wit) over Python's `sqlite3`.

An in-memory SQLite database with the component's own migrations
(`migrations/sqlite/*.sql`) applied in order. The component writes every statement; this
module only runs them and reports errors as the store's WIT `error` variant.

How wasmtime-py represents the WIT types used here: a `value` is the bare Python value
(`None`, `int`, `float`, `str`, `bytes`: its cases have distinct Python types); a
`result` is its `ok` value, or a `Variant` for its `err` case; a record is a `Record`
whose attributes are the WIT field names (`expect-rows`); `u64` is an `int`.
"""

import sqlite3
from pathlib import Path

from wasmtime.component import LinkerInstance, Record, Variant

INTERFACE = "portcullis:auth/store@0.1.0"


class SqliteStore:
    """The store's four functions over one SQLite connection."""

    def __init__(self, migrations: Path) -> None:
        # Autocommit: a batch opens and ends its own transaction.
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.execute("PRAGMA foreign_keys = ON")
        for migration in sorted(migrations.glob("*.sql")):
            self.db.executescript(migration.read_text(encoding="utf-8"))

    def add_to(self, instance: LinkerInstance) -> None:
        """Defines the functions in the linker's `portcullis:auth/store` instance."""
        instance.add_func("dialect", lambda _store: "sqlite")
        instance.add_func("query", lambda _store, sql, params: self.query(sql, params))
        instance.add_func("execute", lambda _store, sql, params: self.execute(sql, params))
        instance.add_func("batch", lambda _store, statements: self.batch(statements))

    def query(self, sql: str, params: list) -> "Record | Variant":
        try:
            cursor = self.db.execute(sql, params)
            rows = [list(row) for row in cursor.fetchall()]
        except sqlite3.Error as error:
            return store_error(error)
        result = Record()
        result.columns = [column[0] for column in cursor.description or []]
        result.rows = rows
        return result

    def execute(self, sql: str, params: list) -> "int | Variant":
        try:
            return affected(self.db.execute(sql, params))
        except sqlite3.Error as error:
            return store_error(error)

    def batch(self, statements: list) -> "list | Variant":
        """All statements in one transaction; an `expect-rows` mismatch rolls all back."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            return store_error(error)
        counts = []
        try:
            for index, statement in enumerate(statements):
                count = affected(self.db.execute(statement.sql, statement.params))
                expected = getattr(statement, "expect-rows")
                if expected is not None and count != expected:
                    self.db.execute("ROLLBACK")
                    return Variant("condition-failed", index)
                counts.append(count)
            self.db.execute("COMMIT")
            return counts
        except sqlite3.Error as error:
            self.db.execute("ROLLBACK")
            return store_error(error)


def affected(cursor: sqlite3.Cursor) -> int:
    """Rows the statement matched (SQLite counts matched rows; -1 for non-DML)."""
    return max(cursor.rowcount, 0)


def store_error(error: sqlite3.Error) -> Variant:
    """The store's WIT `error` for a sqlite3 exception."""
    message = str(error)
    if isinstance(error, sqlite3.IntegrityError) and message.startswith("UNIQUE constraint failed"):
        return Variant("unique-violation", message)
    if isinstance(error, sqlite3.OperationalError) and "locked" in message:
        return Variant("unavailable", message)
    return Variant("other", message)
