"""operator entries: packages and versions an operator adds that upstream does not show

``piw-add`` (piwheels' piw-add and its mr_chase ADDPKG/ADDVER) records a package or a
version PyPI does not show (a name to import wheels under, a release PyPI deleted) with its
description, aliases, release date and yank. These are the operator's, beside the
reorderer's registers and never in them: a replay of upstream's log cannot undo them and they
cannot change what the log converges to. The catalog's views (migration 0009) now count them
in: a package is live when upstream has it live or an operator added it; a version when
upstream has it live, or an operator added it and its package is live (withheld when the
package is quarantined upstream). ``piw-remove`` deletes an operator's entry.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

UPSTREAM_PACKAGES = (
    "SELECT p.name, (p.quarantined AND p.quarantine_k > p.deleted_k) AS quarantined "
    "FROM packages p WHERE p.created_k > p.deleted_k")
UPSTREAM_VERSIONS = (
    "SELECT v.package, v.version, "
    "(p.quarantined AND p.quarantine_k > p.deleted_k) OR (v.quarantined AND v.quarantine_k > "
    "greatest(v.deleted_k, p.deleted_k)) AS withheld "
    "FROM versions v JOIN packages p ON p.name = v.package "
    "WHERE v.created_k > greatest(v.deleted_k, p.deleted_k)")
OPERATOR_PACKAGES = (
    " UNION ALL SELECT o.name, false FROM operator_packages o WHERE o.added AND NOT EXISTS "
    "(SELECT 1 FROM packages p WHERE p.name = o.name AND p.created_k > p.deleted_k)")
OPERATOR_VERSIONS = (
    " UNION ALL SELECT o.package, o.version, l.quarantined FROM operator_versions o "
    "JOIN live_packages l ON l.name = o.package WHERE NOT EXISTS (SELECT 1 FROM versions v "
    "JOIN packages p ON p.name = v.package WHERE v.package = o.package AND "
    "v.version = o.version AND v.created_k > greatest(v.deleted_k, p.deleted_k))")


def _views(packages: str, versions: str) -> None:
    op.execute(f"CREATE OR REPLACE VIEW live_packages AS {packages}")
    op.execute(f"CREATE OR REPLACE VIEW live_versions AS {versions}")


def upgrade() -> None:
    op.create_table(
        'operator_packages',
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('display_name', sa.Text(), nullable=False),
        sa.Column('added', sa.Boolean(), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('aliases', sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"),
                  nullable=False),
        sa.Column('added_by', sa.Text(), nullable=True),
        sa.Column('added_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_table(
        'operator_versions',
        sa.Column('package', sa.Text(), nullable=False),
        sa.Column('version', sa.Text(), nullable=False),
        sa.Column('released', sa.BigInteger(), nullable=False),
        sa.Column('yanked', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.Column('added_by', sa.Text(), nullable=True),
        sa.Column('added_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.PrimaryKeyConstraint('package', 'version'),
    )
    _views(UPSTREAM_PACKAGES + OPERATOR_PACKAGES, UPSTREAM_VERSIONS + OPERATOR_VERSIONS)


def downgrade() -> None:
    _views(UPSTREAM_PACKAGES, UPSTREAM_VERSIONS)
    op.drop_table('operator_versions')
    op.drop_table('operator_packages')
