"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 12:56:42.481811
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('consumer_marks',
    sa.Column('consumer', sa.Text(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('consumer')
    )
    op.create_table('malformed_rows',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('serial', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('malformed_rows_raw', 'malformed_rows', [sa.literal_column('md5(raw)')], unique=True, postgresql_where=sa.text('serial IS NULL'))
    op.create_index('malformed_rows_serial', 'malformed_rows', ['serial'], unique=True, postgresql_where=sa.text('serial IS NOT NULL'))
    op.create_table('outbox',
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('events', postgresql.JSON(astext_type=sa.Text()), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_index('outbox_unsent', 'outbox', ['seq'], unique=False, postgresql_where=sa.text('sent_at IS NULL'))
    op.create_table('packages',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('display_name', sa.Text(), nullable=False),
    sa.Column('display_k', sa.BigInteger(), nullable=False),
    sa.Column('created_k', sa.BigInteger(), nullable=False),
    sa.Column('deleted_k', sa.BigInteger(), nullable=False),
    sa.Column('quarantine_k', sa.BigInteger(), nullable=False),
    sa.Column('quarantined', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('held_rows',
    sa.Column('serial', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('k', sa.BigInteger(), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=True),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('filename', sa.Text(), nullable=True),
    sa.Column('pyver', sa.Text(), nullable=True),
    sa.Column('old_name', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('serial')
    )
    op.create_index(op.f('ix_held_rows_k'), 'held_rows', ['k'], unique=False)
    op.create_table('upstream_state',
    sa.Column('id', sa.SmallInteger(), nullable=False),
    sa.Column('last_serial', sa.BigInteger(), nullable=False),
    sa.Column('max_ts', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('id = 1', name='upstream_state_single_row'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('versions',
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('created_k', sa.BigInteger(), nullable=False),
    sa.Column('deleted_k', sa.BigInteger(), nullable=False),
    sa.Column('release_k', sa.BigInteger(), nullable=False),
    sa.Column('yank_k', sa.BigInteger(), nullable=False),
    sa.Column('yanked', sa.Boolean(), nullable=False),
    sa.Column('yanked_reason', sa.Text(), nullable=True),
    sa.Column('requires_python', sa.Text(), nullable=True),
    sa.Column('info_k', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('package', 'version')
    )
    op.create_table('upstream_files',
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('pyver', sa.Text(), nullable=True),
    sa.Column('added_k', sa.BigInteger(), nullable=False),
    sa.Column('removed_k', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('package', 'version', 'filename')
    )
    op.execute("INSERT INTO upstream_state (id, last_serial, max_ts) VALUES (1, 0, 0)")


def downgrade() -> None:
    op.drop_table('upstream_files')
    op.drop_table('versions')
    op.drop_table('upstream_state')
    op.drop_index(op.f('ix_held_rows_k'), table_name='held_rows')
    op.drop_table('held_rows')
    op.drop_table('packages')
    op.drop_index('outbox_unsent', table_name='outbox', postgresql_where=sa.text('sent_at IS NULL'))
    op.drop_table('outbox')
    op.drop_index('malformed_rows_serial', table_name='malformed_rows', postgresql_where=sa.text('serial IS NOT NULL'))
    op.drop_index('malformed_rows_raw', table_name='malformed_rows', postgresql_where=sa.text('serial IS NULL'))
    op.drop_table('malformed_rows')
    op.drop_table('consumer_marks')
