"""Bulk writes as one ``INSERT ... SELECT FROM unnest(arrays)`` statement per table.

COPY would be faster still, but psycopg2 refuses it under eventlet's wait callback (the one
that keeps queries cooperative), so a history replay rides on column arrays instead: one round
trip for any number of rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def insert_rows(cursor: Any, table: str, columns: Mapping[str, str],
                rows: Sequence[Sequence[Any]], key: Sequence[str] = (),
                upsert: bool = False) -> None:
    """Insert *rows* (tuples in the order of *columns*, a name -> SQL type mapping).

    With *key*, rows whose key exists are skipped, or updated in full when *upsert*.
    """
    if not rows:
        return
    names = list(columns)
    arrays = [list(col) for col in zip(*rows, strict=True)]
    unnest = ", ".join(f"%s::{columns[n]}[]" for n in names)
    sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({unnest})"
    if key:
        sql += f" ON CONFLICT ({', '.join(key)}) DO "
        sql += ("UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in key)
                if upsert else "NOTHING")
    cursor.execute(sql, arrays)
