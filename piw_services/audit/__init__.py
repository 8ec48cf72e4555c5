"""``piw-audit``: compares the database, the file store and the www tree's pages, and reports
every disagreement between them (see :mod:`piw_services.audit.checks`)."""

from piw_services.audit.checks import Disagreement, Snapshot, audit, compare, gather

__all__ = ["Disagreement", "Snapshot", "audit", "compare", "gather"]
