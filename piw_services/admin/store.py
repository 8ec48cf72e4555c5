"""The admin service's own tables: the operators' entries of piw-add (migration 0015).

``operator_packages`` and ``operator_versions`` sit beside the reorderer's registers, never in
them, so no replay of upstream's log touches them; the catalog's views and
``reorderer.queries.package_state`` count them in. Every function runs in the caller's (the
action's) transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def package_entry(session: Session, name: str) -> Any:
    """The operator's row of package *name* (canonical), or None."""
    return session.execute(text(
        "SELECT name, display_name, added, description, aliases FROM operator_packages "
        "WHERE name = :p"), {"p": name}).first()


def put_package(session: Session, name: str, display_name: str, added: bool,
                description: str | None, aliases: list[str], who: str | None) -> None:
    """Record (or update) the operator's package: a description or aliases given replace or
    extend what was recorded; *added* once set stays set."""
    session.execute(text(
        "INSERT INTO operator_packages (name, display_name, added, description, aliases, "
        "added_by) VALUES (:n, :d, :a, :desc, CAST(:al AS text[]), :w) "
        "ON CONFLICT (name) DO UPDATE SET added = operator_packages.added OR excluded.added, "
        "description = coalesce(excluded.description, operator_packages.description), "
        "aliases = ARRAY(SELECT DISTINCT unnest(operator_packages.aliases || excluded.aliases) "
        "ORDER BY 1)"),
        {"n": name, "d": display_name, "a": added, "desc": description,
         "al": sorted(set(aliases)), "w": who})


def put_version(session: Session, package: str, version: str, released: int, yanked: bool,
                who: str | None) -> None:
    session.execute(text(
        "INSERT INTO operator_versions (package, version, released, yanked, added_by) "
        "VALUES (:p, :v, :r, :y, :w) ON CONFLICT (package, version) DO NOTHING"),
        {"p": package, "v": version, "r": released, "y": yanked, "w": who})


def set_yanked(session: Session, package: str, version: str, yanked: bool) -> None:
    session.execute(text("UPDATE operator_versions SET yanked = :y "
                         "WHERE package = :p AND version = :v"),
                    {"p": package, "v": version, "y": yanked})


def delete_versions(session: Session, package: str, versions: list[str]) -> int:
    """Delete the operator's entries of these versions; how many there were."""
    return len(session.execute(text(
        "DELETE FROM operator_versions WHERE package = :p AND version = ANY(:v) RETURNING 1"),
        {"p": package, "v": versions}).all())


def delete_package(session: Session, package: str) -> int:
    """Delete the operator's entries of the package and of all its versions; how many."""
    return sum(len(session.execute(text(f"DELETE FROM {table} WHERE {column} = :p RETURNING 1"),
                                   {"p": package}).all())
               for table, column in (("operator_versions", "package"),
                                     ("operator_packages", "name")))
