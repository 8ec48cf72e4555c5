"""operators' package skips

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 18:10:00.000000
"""

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'build_package_skips',
        sa.Column('package', sa.Text(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('since', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.PrimaryKeyConstraint('package'),
    )


def downgrade() -> None:
    op.drop_table('build_package_skips')
