"""image_packages: apt packages preinstalled per target image distro, and their loads

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'image_packages',
        sa.Column('distro', sa.Text(), nullable=False),
        sa.Column('package', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('distro', 'package'),
    )
    op.create_table(
        'image_loads',
        sa.Column('distro', sa.Text(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('loaded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('distro'),
    )


def downgrade() -> None:
    op.drop_table('image_loads')
    op.drop_table('image_packages')
