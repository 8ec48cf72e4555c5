"""blocked_builders: RabbitMQ users the master cut off for sending too many refused messages

A builder whose messages build_dispatch, file_manager or stats refuse ``BUILDER_REFUSAL_LIMIT``
times in a minute loses its RabbitMQ permissions and connections (piw_services/builder_queues.py);
the row keeps the permissions it had, so an operator's ``piw-unblock`` gives them back. Owned
by build_dispatch (the builder registry's service); /status/ lists the rows.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'blocked_builders',
        sa.Column('user_name', sa.Text(), nullable=False),
        sa.Column('blocked_at', sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('refusals', sa.Integer(), nullable=False),
        sa.Column('permissions', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('user_name'),
    )


def downgrade() -> None:
    op.drop_table('blocked_builders')
