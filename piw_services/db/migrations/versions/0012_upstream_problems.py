"""upstream problems: what upstream refused (for /status/), and which parser judged a row

``master_readings.upstream_problem``: the upstream service's last refusal ("upstream refuses
changelog_since_serial: ..."), sampled by stats with the master's other numbers.

``malformed_rows.parser``: the version of the parser (reorderer/parse.py ``PARSER_VERSION``)
that could not use the row. Rows already recorded were judged by version 1, which did not
know warehouse's release quarantine: the reorderer parses every row of an older version
again at start and applies the ones it now understands, in time order.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 08:55:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('master_readings', sa.Column('upstream_problem', sa.Text(), nullable=True))
    op.add_column('malformed_rows', sa.Column('parser', sa.Integer(),
                                              server_default=sa.text('1'), nullable=False))


def downgrade() -> None:
    op.drop_column('malformed_rows', 'parser')
    op.drop_column('master_readings', 'upstream_problem')
