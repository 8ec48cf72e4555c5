"""What other services may read of the index's state (admin waits for its pages, piw-audit
waits for quiet): the packages whose pages are still to be rewritten."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.index import dirty


def pages_pending(session: Session, package: str | None = None) -> bool:
    """Whether *package*'s pages (any package's, when None) are still to be rewritten."""
    return session.execute(text(
        "SELECT 1 FROM index_dirty WHERE package = :p OR CAST(:p AS text) IS NULL LIMIT 1"),
        {"p": package}).first() is not None


def pages_pending_count(session: Session) -> int:
    """How many packages (and the root) wait for the index to rewrite their pages."""
    return dirty.pending(session)
