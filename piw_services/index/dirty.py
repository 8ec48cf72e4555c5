"""The set of packages whose pages must be rewritten (table ``index_dirty``).

Events only add names here, inside their consumer's transaction; a flush takes a batch with
SKIP LOCKED (so index instances share the work) and deletes it in the transaction that writes
the pages: a crash mid-render leaves the names dirty for the next flush.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

#: The row that stands for the root pages (simple index, home page, packages.json).
ROOT = ":root"


def mark(session: Session, packages: Iterable[str]) -> None:
    names = sorted(set(packages))
    if names:
        session.execute(text(
            "INSERT INTO index_dirty (package) SELECT unnest(CAST(:p AS text[])) "
            "ON CONFLICT DO NOTHING"), {"p": names})


def mark_all(session: Session) -> int:
    """Every live package, and the root: for a full rebuild of the tree."""
    result = session.execute(text(
        "INSERT INTO index_dirty (package) SELECT name FROM live_packages "
        "UNION SELECT :root ON CONFLICT DO NOTHING"),
        {"root": ROOT})
    return result.rowcount


def take(session: Session, limit: int) -> list[str]:
    """Remove and return up to *limit* dirty packages (oldest first), not the root."""
    return list(session.execute(text(
        "DELETE FROM index_dirty WHERE package IN (SELECT package FROM index_dirty "
        "WHERE package <> :root ORDER BY since LIMIT :n FOR UPDATE SKIP LOCKED) "
        "RETURNING package"), {"root": ROOT, "n": limit}).scalars())


def take_root(session: Session) -> bool:
    """Remove the root's mark; True when it was set (and not taken by another instance)."""
    return session.execute(text(
        "DELETE FROM index_dirty WHERE package IN (SELECT package FROM index_dirty "
        "WHERE package = :root FOR UPDATE SKIP LOCKED) RETURNING package"),
        {"root": ROOT}).first() is not None


def pending(session: Session) -> int:
    return session.execute(text("SELECT count(*) FROM index_dirty")).scalar_one()
