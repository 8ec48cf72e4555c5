"""stats: downloads and searches (raw and aggregated), builder and master readings

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 20:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

AGENT = ("installer_name", "installer_version", "python_version", "implementation_name",
         "implementation_version", "distro_name", "distro_version", "distro_id", "system_name",
         "system_release", "arch")


def _agent():
    return [sa.Column(name, sa.Text(), nullable=True) for name in AGENT]


def _readings():
    return [sa.Column(name, sa.Float(), nullable=True)
            for name in ("temperature", "load1", "memory_used", "swap_used", "disk_used")]


def upgrade() -> None:
    op.create_table(
        'downloads',
        sa.Column('key', postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('package', sa.Text(), nullable=False),
        sa.Column('version', sa.Text(), nullable=True),
        sa.Column('filename', sa.Text(), nullable=False),
        sa.Column('status', sa.SmallInteger(), nullable=False),
        sa.Column('client', sa.Text(), nullable=True),
        *_agent(),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('downloads_version', 'downloads', ['package', 'version'])
    op.create_table(
        'searches',
        sa.Column('key', postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('package', sa.Text(), nullable=False),
        sa.Column('status', sa.SmallInteger(), nullable=False),
        sa.Column('client', sa.Text(), nullable=True),
        *_agent(),
        sa.PrimaryKeyConstraint('key'),
    )
    for table, period in (('downloads_daily', 'day'), ('downloads_monthly', 'month')):
        op.create_table(
            table,
            sa.Column(period, sa.Date(), nullable=False),
            sa.Column('package', sa.Text(), nullable=False),
            sa.Column('count', sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint(period, 'package'),
        )
    op.create_index('downloads_daily_package', 'downloads_daily', ['package', 'day'])
    for table, period in (('download_dims_daily', 'day'), ('download_dims_monthly', 'month')):
        op.create_table(
            table,
            sa.Column(period, sa.Date(), nullable=False),
            sa.Column('dimension', sa.Text(), nullable=False),
            sa.Column('value', sa.Text(), nullable=False),
            sa.Column('count', sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint(period, 'dimension', 'value'),
        )
    op.create_table(
        'searches_daily',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('package', sa.Text(), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('unserved', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'package'),
    )
    op.create_table(
        'builder_readings',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('builder_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        *_readings(),
        sa.Column('job', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('builder_readings_at', 'builder_readings', ['builder_id', 'at'])
    op.create_table(
        'master_readings',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        *_readings(),
        sa.Column('queues', sa.JSON(), nullable=False),
        sa.Column('behind_upstream', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_master_readings_at', 'master_readings', ['at'])


def downgrade() -> None:
    for table in ('master_readings', 'builder_readings', 'searches_daily',
                  'download_dims_monthly', 'download_dims_daily', 'downloads_monthly',
                  'downloads_daily', 'searches', 'downloads'):
        op.drop_table(table)
