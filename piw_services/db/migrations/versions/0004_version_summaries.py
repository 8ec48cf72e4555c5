"""version summaries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 16:59:03.218940
"""

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('versions', sa.Column('summary', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('versions', 'summary')
