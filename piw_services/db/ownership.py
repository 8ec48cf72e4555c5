"""Which service owns which table. Only the owner writes a table; another service reads it only
through the owner's ``queries`` module, and reads the catalog through its views. The SQL of every
service is checked against this (tests/test_package_structure.py)."""

from __future__ import annotations

OWNERS: dict[str, frozenset[str]] = {
    "reorderer": frozenset({"upstream_state", "held_rows", "malformed_rows", "renames",
                            "packages", "versions", "upstream_files",
                            # operators' entries (piw-add), beside upstream's registers
                            "operator_packages", "operator_versions"}),
    "build_dispatch": frozenset({"build_abis", "build_versions", "build_package_skips",
                                 "build_targets", "builds", "builders", "image_packages",
                                 "image_loads", "blocked_builders"}),
    "file_manager": frozenset({"files"}),
    "index": frozenset({"index_dirty"}),
    "stats": frozenset({"downloads", "searches", "downloads_daily", "downloads_monthly",
                        "download_dims_daily", "download_dims_monthly", "searches_daily",
                        "builder_readings", "master_readings"}),
}
#: the catalog's rules and what build_dispatch needs of it (reorderer migrations 0009, 0011,
#: 0019): every service may read them
CATALOG_VIEWS = frozenset({"live_packages", "live_versions", "servable_packages",
                           "servable_versions", "version_details", "upstream_wheels"})
#: the transactional outbox (piw_services/outbox.py): every producer writes it, every consumer
#: keeps its mark
SHARED = frozenset({"outbox", "consumer_marks"})


def owner_of(table: str) -> str | None:
    """The service that owns *table* (None: a view, a shared table, or not ours)."""
    return next((service for service, tables in OWNERS.items() if table in tables), None)
