"""versions_info_due: the versions whose upstream details are due, newest first, by index

upstream asks the reorderer after every poll that brought rows which versions' details
(Requires-Python, yank reason, summary) to read from the JSON API
(reorderer.store.versions_needing_info). The question was answered by reading every version:
0.2-0.6 s at 82,000 versions, seconds at PyPI's millions, once a second when following PyPI.
This partial index holds only the versions not read since their newest creation, yank or
quarantine clearing, ordered by that key, so the recent ones are a short range of it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 15:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

DUE = 'greatest(quarantine_k, created_k, yank_k)'


def upgrade() -> None:
    op.create_index('versions_info_due', 'versions', [sa.text(DUE)],
                    postgresql_where=sa.text(f'{DUE} > info_k'))


def downgrade() -> None:
    op.drop_index('versions_info_due', table_name='versions')
