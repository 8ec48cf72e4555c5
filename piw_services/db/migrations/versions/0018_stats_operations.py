"""stats operations: the changes other services may make to the stats service's data

stats owns the downloads and their aggregates. An operator's removal of a version (the admin
service) deletes its logged downloads in the same transaction as the rest of the removal, so
the admin service gets SECURITY DEFINER functions to EXECUTE, not the tables (as piwheels'
piwheels/master/sql/create_piwheels.sql does); piw_services/stats/operations.py wraps them.

- ``stats_download_versions(package)``: the spellings of versions the package's downloads
  carry (the caller matches them to a version as PEP 440 does);
- ``stats_delete_downloads(package, versions)``: forget those downloads and take them out of
  every aggregate; returns how many went.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 12:00:00.000000
"""

from piw_services.db import definer
from piw_services.db.definer import DEFINER

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

#: each function's arguments (for REVOKE and DROP)
FUNCTIONS = {
    'stats_download_versions': 'text',
    'stats_delete_downloads': 'text, text[]',
}

#: (dimension, value) pairs of a download row aliased ``n``, as stats.store counts them
DIMENSIONS = (
    "(VALUES ('python', coalesce(substring(n.python_version from '^[0-9]+\\.[0-9]+'), "
    "'unknown')), ('distro', coalesce(nullif(concat_ws(' ', n.distro_name, n.distro_version), "
    "''), 'unknown')), ('arch', coalesce(n.arch, 'unknown')), "
    "('installer', coalesce(lower(n.installer_name), 'unknown'))) d(dimension, value)")
DAY = "(n.at AT TIME ZONE 'UTC')::date AS day"
MONTH = "date_trunc('month', n.at AT TIME ZONE 'UTC')::date AS month"

SQL = [
    f"""CREATE FUNCTION stats_download_versions(p_package text) RETURNS SETOF text
    LANGUAGE sql STABLE {DEFINER} AS $$
    SELECT DISTINCT version FROM downloads WHERE package = p_package AND version IS NOT NULL
    $$""",

    f"""CREATE FUNCTION stats_delete_downloads(p_package text, p_versions text[])
    RETURNS integer LANGUAGE plpgsql {DEFINER} AS $$
    DECLARE
      gone integer;
    BEGIN
      WITH n AS (DELETE FROM downloads WHERE package = p_package AND version = ANY(p_versions)
                 RETURNING *),
      a AS (UPDATE downloads_daily t SET count = t.count - g.c FROM (
              SELECT {DAY}, count(*) AS c FROM n GROUP BY 1) g
            WHERE t.day = g.day AND t.package = p_package),
      b AS (UPDATE downloads_monthly t SET count = t.count - g.c FROM (
              SELECT {MONTH}, count(*) AS c FROM n GROUP BY 1) g
            WHERE t.month = g.month AND t.package = p_package),
      c AS (UPDATE download_dims_daily t SET count = t.count - g.c FROM (
              SELECT {DAY}, d.dimension, d.value, count(*) AS c FROM n
              CROSS JOIN LATERAL {DIMENSIONS} GROUP BY 1, 2, 3) g
            WHERE (t.day, t.dimension, t.value) = (g.day, g.dimension, g.value)),
      e AS (UPDATE download_dims_monthly t SET count = t.count - g.c FROM (
              SELECT {MONTH}, d.dimension, d.value, count(*) AS c FROM n
              CROSS JOIN LATERAL {DIMENSIONS} GROUP BY 1, 2, 3) g
            WHERE (t.month, t.dimension, t.value) = (g.month, g.dimension, g.value))
      SELECT count(*) INTO gone FROM n;
      DELETE FROM downloads_daily WHERE count <= 0;
      DELETE FROM downloads_monthly WHERE count <= 0;
      DELETE FROM download_dims_daily WHERE count <= 0;
      DELETE FROM download_dims_monthly WHERE count <= 0;
      RETURN gone;
    END $$""",
]


def upgrade() -> None:
    definer.create(SQL, FUNCTIONS)


def downgrade() -> None:
    definer.drop(FUNCTIONS)
