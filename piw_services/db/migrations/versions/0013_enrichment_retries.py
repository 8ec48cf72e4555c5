"""enrichment retries: a failed look-up of a version in upstream's JSON API is tried again

Until now a 404 or an odd answer was stored as "looked up" (``info_k`` moved on), so a version
whose first look-up failed was never asked about again and was built without its
Requires-Python. ``info_failures`` counts failed look-ups in a row; ``info_after`` is when the
next may run (an exponential back-off); after enough of them the version is marked looked up
with nothing, so its builds are not held back for ever.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 08:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('versions', sa.Column('info_failures', sa.SmallInteger(),
                                        server_default=sa.text('0'), nullable=False))
    op.add_column('versions', sa.Column('info_after', sa.DateTime(timezone=True),
                                        nullable=True))


def downgrade() -> None:
    op.drop_column('versions', 'info_after')
    op.drop_column('versions', 'info_failures')
