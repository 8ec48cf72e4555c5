"""release quarantine: versions carry warehouse's ``release quarantined`` register

Since 2026 PyPI writes ``release quarantined`` / ``release quarantine cleared`` journal rows
(warehouse/utils/project.py); the reorderer keeps them as a last-writer-wins fact of the
version, like a yank. Existing versions start unquarantined. The view ``live_versions``
(migration 0009) now withholds a version quarantined in its current life as well as one of a
quarantined package, so ``servable_versions`` and every reader of them follow.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

LIVE_VERSIONS = (
    "CREATE OR REPLACE VIEW live_versions AS SELECT v.package, v.version, "
    "(p.quarantined AND p.quarantine_k > p.deleted_k){} AS withheld "
    "FROM versions v JOIN packages p ON p.name = v.package "
    "WHERE v.created_k > greatest(v.deleted_k, p.deleted_k)")
#: a version quarantined in its own current life (the reorderer's version_quarantined)
VERSION_QUARANTINED = (" OR (v.quarantined AND v.quarantine_k > "
                       "greatest(v.deleted_k, p.deleted_k))")


def upgrade() -> None:
    op.add_column('versions', sa.Column('quarantine_k', sa.BigInteger(),
                                        server_default=sa.text('0'), nullable=False))
    op.add_column('versions', sa.Column('quarantined', sa.Boolean(),
                                        server_default=sa.text('false'), nullable=False))
    op.execute(LIVE_VERSIONS.format(VERSION_QUARANTINED))


def downgrade() -> None:
    op.execute(LIVE_VERSIONS.format(""))
    op.drop_column('versions', 'quarantined')
    op.drop_column('versions', 'quarantine_k')
