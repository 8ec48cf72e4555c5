"""renames: the legacy ``rename from <old>`` rows the catalog has seen

A legacy rename moved a project's releases and files to the new name (reorderer/catalog.py):
every row of the old name older than the rename also counts for the new name. The reorderer
keeps the renames here so rows of the old name that arrive later still reach the new one.
Renames already applied by an older piw (which only deleted the old name) are not replayed:
their rows are gone from the buffer; a replay from serial 0 rebuilds them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'renames',
        sa.Column('old', sa.Text(), nullable=False),
        sa.Column('new', sa.Text(), nullable=False),
        sa.Column('k', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('old', 'new', 'k'),
    )


def downgrade() -> None:
    op.drop_table('renames')
