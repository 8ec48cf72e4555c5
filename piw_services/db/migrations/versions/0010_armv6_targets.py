"""build_abis.armv6: whether a target's image is ARMv6-compatible

A Debian armhf userland builds ARMv7 code (Thumb-2, VFPv3-D16) that a Pi 1 or Zero cannot
run; 32-bit Raspberry Pi OS builds ARMv6-compatible code. file_manager serves an armv7l wheel
under its armv6l name only when its target's image is declared ARMv6-compatible (BUILD_ABIS
``abi:platform:distro:armv6``); before, every armv7l wheel was. False by default: the
setting comes from BUILD_ABIS at build_dispatch's next start.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 08:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('build_abis', sa.Column('armv6', sa.Boolean(), nullable=False,
                                          server_default=sa.text('false')))


def downgrade() -> None:
    op.drop_column('build_abis', 'armv6')
