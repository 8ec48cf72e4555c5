"""builds and files

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:06:01.629159
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('build_abis',
    sa.Column('abi', sa.Text(), nullable=False),
    sa.Column('distro', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.PrimaryKeyConstraint('abi')
    )
    op.create_table('build_targets',
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('abi', sa.Text(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('job_id', sa.Text(), nullable=False),
    sa.Column('priority', sa.SmallInteger(), nullable=False),
    sa.Column('builder_id', sa.Integer(), nullable=True),
    sa.Column('build_id', sa.BigInteger(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('package', 'version', 'abi')
    )
    op.create_index('build_targets_job', 'build_targets', ['job_id'], unique=True)
    op.create_index('build_targets_pending', 'build_targets', ['abi', sa.text('priority DESC'), 'updated_at'], unique=False, postgresql_where=sa.text("state = 'pending'"))
    op.create_table('build_versions',
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('buildable', sa.Boolean(), nullable=False),
    sa.Column('released', sa.BigInteger(), nullable=False),
    sa.Column('skip_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('package', 'version')
    )
    op.create_table('builders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('abi', sa.Text(), nullable=False),
    sa.Column('info', postgresql.JSON(astext_type=sa.Text()), nullable=False),
    sa.Column('preinstalled', postgresql.JSON(astext_type=sa.Text()), nullable=False),
    sa.Column('state', sa.Text(), server_default=sa.text("'alive'"), nullable=False),
    sa.Column('job_id', sa.Text(), nullable=True),
    sa.Column('job_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('readings', postgresql.JSON(astext_type=sa.Text()), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('builds',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('job_id', sa.Text(), nullable=False),
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('abi', sa.Text(), nullable=False),
    sa.Column('builder_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('duration', sa.Float(), nullable=False),
    sa.Column('log_gz', sa.LargeBinary(), nullable=False),
    sa.Column('files', postgresql.JSON(astext_type=sa.Text()), nullable=False),
    sa.Column('not_uploaded', postgresql.JSON(astext_type=sa.Text()), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id')
    )
    op.create_index('builds_version', 'builds', ['package', 'version'], unique=False)
    op.create_table('files',
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('package', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('abi', sa.Text(), nullable=False),
    sa.Column('job_id', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('metadata_sha256', sa.Text(), nullable=True),
    sa.Column('requires_python', sa.Text(), nullable=True),
    sa.Column('requires_dist', postgresql.JSON(astext_type=sa.Text()), nullable=False),
    sa.Column('apt_depends', postgresql.JSON(astext_type=sa.Text()), nullable=False),
    sa.Column('unresolved', postgresql.JSON(astext_type=sa.Text()), nullable=False),
    sa.Column('link_of', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('filename')
    )
    op.create_index('files_version', 'files', ['package', 'version'], unique=False)


def downgrade() -> None:
    op.drop_index('files_version', table_name='files')
    op.drop_table('files')
    op.drop_index('builds_version', table_name='builds')
    op.drop_table('builds')
    op.drop_table('builders')
    op.drop_table('build_versions')
    op.drop_index('build_targets_pending', table_name='build_targets', postgresql_where=sa.text("state = 'pending'"))
    op.drop_index('build_targets_job', table_name='build_targets')
    op.drop_table('build_targets')
    op.drop_table('build_abis')
