"""What other services may change of the stats service's data: an operator's removal (the
admin service) forgets the removed version's logged downloads, in its own transaction.

Each call is one of the SECURITY DEFINER functions of migration 0018 (as piwheels' services
call those of piwheels/master/sql/create_piwheels.sql): the admin service's database role may
execute them but not touch the downloads tables.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.names import same_version


def delete_downloads(session: Session, package: str, version: str) -> int:
    """Forget the logged downloads of one version and take them out of every aggregate;
    returns how many went. Versions match as PEP 440 does, so the ``1.0`` of the catalog
    takes the ``1.0.0`` of a wheel's filename with it."""
    spellings = [v for v in session.execute(text(
        "SELECT stats_download_versions(:p)"), {"p": package}).scalars()
        if same_version(v, version)]
    if not spellings:
        return 0
    return session.execute(text("SELECT stats_delete_downloads(:p, :v)"),
                           {"p": package, "v": spellings}).scalar_one()
