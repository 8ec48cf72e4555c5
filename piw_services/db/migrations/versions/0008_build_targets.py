"""build targets: the ``abi`` columns hold ``<abi>-<platform>`` keys (cp311-linux_armv7l)

One ABI's armv7l and aarch64 builders used to share the queue ``piw.builds.<abi>`` and took
each other's jobs. From now on a build target is an ABI on a platform, and every ``abi``
column (build_abis, build_targets, builds, builders, files) holds its key. The columns keep
their name; only their values change.

Existing rows get the platform of the newest builder registered for their ABI (what built
them), else ``linux_armv7l`` (what piwheels and a 32-bit Raspberry Pi OS build). Jobs queued
or being built on the old queue are made pending again, so build_dispatch publishes them to
the new queue (their job ids stay; builders must be upgraded too, the job message changed).
The old queue ``piw.builds.<abi>`` is left for an operator to delete.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:00:00.000000
"""

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TABLES = ('build_abis', 'build_targets', 'builds', 'builders', 'files')
#: What builders.protocol.check_platform accepts.
PLATFORM = "'^[a-z][a-z0-9_]{0,60}$'"
DEFAULT_PLATFORM = 'linux_armv7l'


def upgrade() -> None:
    old_abis = ' UNION '.join(f'SELECT abi FROM {t}' for t in TABLES)
    op.execute(
        "CREATE TEMP TABLE _piw_0008 AS SELECT o.abi AS old, o.abi || '-' || coalesce(("
        "SELECT b.info->>'platform' FROM builders b WHERE b.abi = o.abi "
        f"AND b.info->>'platform' ~ {PLATFORM} AND b.info->>'platform' <> 'any' "
        f"ORDER BY b.id DESC LIMIT 1), '{DEFAULT_PLATFORM}') AS new "
        f"FROM ({old_abis}) o WHERE position('-' in o.abi) = 0")
    for table in TABLES:
        op.execute(f"UPDATE {table} x SET abi = m.new FROM _piw_0008 m WHERE x.abi = m.old")
    op.execute("DROP TABLE _piw_0008")
    _requeue()


def downgrade() -> None:
    # one platform per ABI survives (the first key's); the others' rows would collide
    same = "split_part(x.abi, '-', 1) = split_part(y.abi, '-', 1) AND x.abi > y.abi"
    op.execute(f"DELETE FROM build_abis x USING build_abis y WHERE {same}")
    op.execute("DELETE FROM build_targets x USING build_targets y WHERE x.package = y.package "
               f"AND x.version = y.version AND {same}")
    for table in TABLES:
        op.execute(f"UPDATE {table} SET abi = split_part(abi, '-', 1) "
                   "WHERE position('-' in abi) > 0")
    _requeue()


def _requeue() -> None:
    """Jobs sitting on (or taken from) a queue that is no longer consumed go back to
    pending; build_dispatch publishes them again under the same job ids."""
    op.execute("UPDATE build_targets SET state = 'pending', builder_id = NULL "
               "WHERE state IN ('queued', 'building')")
    op.execute("UPDATE builders SET job_id = NULL, job_started_at = NULL")
