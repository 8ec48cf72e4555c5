"""What other services may change of the reorderer's data: the operators' entries of piw-add
(operator_packages, operator_versions), which the admin service writes inside its own
transaction (with the outbox event and build_dispatch's changes).

Each call is one of the SECURITY DEFINER functions of migration 0019 (as build_dispatch's
operations.py calls those of 0017): the admin role may execute them but not write the
reorderer's tables. The entries sit beside upstream's registers, never in them, so no replay of
upstream's log touches them; the catalog's views and ``reorderer.queries.package_state`` count
them in.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def put_package(session: Session, name: str, display_name: str, added: bool,
                description: str | None, aliases: list[str], who: str | None) -> None:
    """Record (or update) the operator's package *name* (canonical): a description or aliases
    given replace or extend what was recorded; *added* once set stays set."""
    session.execute(text("SELECT operator_put_package(:n, :d, :a, :desc, :al, :w)"),
                    {"n": name, "d": display_name, "a": added, "desc": description,
                     "al": sorted(set(aliases)), "w": who})


def put_version(session: Session, package: str, version: str, released: int, yanked: bool,
                who: str | None) -> None:
    """Record an operator's version (kept as it is if recorded already)."""
    session.execute(text("SELECT operator_put_version(:p, :v, :r, :y, :w)"),
                    {"p": package, "v": version, "r": released, "y": yanked, "w": who})


def set_yanked(session: Session, package: str, version: str, yanked: bool) -> None:
    session.execute(text("SELECT operator_set_yanked(:p, :v, :y)"),
                    {"p": package, "v": version, "y": yanked})


def delete_versions(session: Session, package: str, versions: list[str]) -> int:
    """Delete the operator's entries of these versions; how many there were."""
    return int(session.execute(text("SELECT operator_delete_versions(:p, :v)"),
                               {"p": package, "v": versions}).scalar_one())


def delete_package(session: Session, package: str) -> int:
    """Delete the operator's entries of the package and of all its versions; how many."""
    return int(session.execute(text("SELECT operator_delete_package(:p)"),
                               {"p": package}).scalar_one())
