"""catalog views: the one home of the catalog's "alive" and "servable" rules in SQL

The reorderer owns the catalog (packages, versions) and its rules (reorderer/catalog.py: a
package is alive when its newest creation is newer than its newest deletion; a version when
its newest creation is newer than its own and its package's newest deletion; a quarantine
counts only in the package's current life). Every other reader of the catalog selects from
these views instead of writing the conditions out again, so a change of what "live" means is
one migration:

- ``live_packages(name, quarantined)``: packages alive in their current life;
- ``live_versions(package, version, withheld)``: versions alive, and whether their files are
  withheld (kept, but on no page: the package is quarantined);
- ``servable_packages(name)`` and ``servable_versions(package, version)``: the live ones whose
  files may be served.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:00:00.000000
"""

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

VIEWS = {
    'live_packages':
        "SELECT p.name, (p.quarantined AND p.quarantine_k > p.deleted_k) AS quarantined "
        "FROM packages p WHERE p.created_k > p.deleted_k",
    'live_versions':
        "SELECT v.package, v.version, "
        "(p.quarantined AND p.quarantine_k > p.deleted_k) AS withheld "
        "FROM versions v JOIN packages p ON p.name = v.package "
        "WHERE v.created_k > greatest(v.deleted_k, p.deleted_k)",
    'servable_packages': "SELECT name FROM live_packages WHERE NOT quarantined",
    'servable_versions': "SELECT package, version FROM live_versions WHERE NOT withheld",
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW {name}")
