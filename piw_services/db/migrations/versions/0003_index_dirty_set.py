"""index dirty set

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 15:48:59.815141
"""

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('index_dirty',
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('package')
    )


def downgrade() -> None:
    op.drop_table('index_dirty')
