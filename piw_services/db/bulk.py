"""Bulk writes through PostgreSQL COPY: a history replay is bounded by these, not by Python.

psycopg2 refuses COPY while eventlet's wait callback is installed (the callback that keeps
queries cooperative), so COPY runs in a short synchronous window: it blocks this process's hub
for the duration of one COPY (tenths of a second for 50,000 rows, far inside AMQP heartbeat
limits) and no other greenlet can start a query meanwhile, since none can run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2.extensions


@contextmanager
def _synchronous() -> Iterator[None]:
    callback = psycopg2.extensions.get_wait_callback()
    if callback is None:
        yield
        return
    psycopg2.extensions.set_wait_callback(None)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(callback)


def copy_rows(cursor: Any, table: str, columns: Iterable[str],
              rows: Iterable[Sequence[Any]]) -> None:
    """Append *rows* (tuples in the order of *columns*) to *table* with one COPY.

    Rows travel as CSV written by the csv module's C writer; None and the empty string both
    arrive as NULL (FORCE_NULL), which is what every nullable column of ours means by them.
    """
    names = ", ".join(columns)
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
    buf.seek(0)
    with _synchronous():
        cursor.copy_expert(
            f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv, FORCE_NULL ({names}))", buf)


def upsert_rows(cursor: Any, table: str, columns: Sequence[str],
                key: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert *rows*, replacing whole rows whose *key* exists, through a temporary table."""
    if not rows:
        return
    names = list(columns)
    tmp = f"_upsert_{table}"
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {table} INCLUDING DEFAULTS) "
                   "ON COMMIT DELETE ROWS")
    copy_rows(cursor, tmp, names, rows)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in key)
    cols = ", ".join(names)
    cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {tmp} "
                   f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")
    cursor.execute(f"TRUNCATE {tmp}")
