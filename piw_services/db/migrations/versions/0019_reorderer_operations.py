"""reorderer operations: what other services read and change of the reorderer's catalog

The reorderer owns the catalog (packages, versions, upstream_files) and the operators' entries
beside it (operator_packages, operator_versions, migration 0015). Two more services use it:

- build_dispatch reads what a job and a claim need through two views (as every service reads
  the catalog's rules through those of 0009):

  - ``version_details``: a version's Requires-Python, and ``info_known``: upstream's details
    have been read since its newest creation (reorderer.store.set_version_info);
  - ``upstream_wheels``: the wheels upstream serves now, by version.

- the admin service writes the operators' entries (piw-add, piw-remove) inside its own
  transaction, which also writes the outbox event and build_dispatch's changes: SECURITY
  DEFINER functions owned by the schema's owner, which admin's role may only EXECUTE (as in
  0017 and 0018), wrapped by piw_services/reorderer/operations.py:

  - ``operator_put_package(name, display_name, added, description, aliases, who)``: record
    or update an operator's package (a description or aliases given replace or extend what
    was recorded; *added* once set stays set);
  - ``operator_put_version(package, version, released, yanked, who)``: an added version;
  - ``operator_set_yanked(package, version, yanked)``;
  - ``operator_delete_versions(package, versions)`` and ``operator_delete_package(package)``:
    delete the entries (of the package and all its versions); each returns how many went.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 15:00:00.000000
"""

from alembic import op

from piw_services.db import definer
from piw_services.db.definer import DEFINER

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

VIEWS = {
    'version_details': "SELECT package, version, requires_python, info_k >= created_k AS "
                       "info_known FROM versions",
    'upstream_wheels': "SELECT package, version, filename FROM upstream_files "
                       "WHERE added_k > removed_k AND filename LIKE '%.whl'",
}
#: each function's arguments (for REVOKE and DROP)
FUNCTIONS = {
    'operator_put_package': 'text, text, boolean, text, text[], text',
    'operator_put_version': 'text, text, bigint, boolean, text',
    'operator_set_yanked': 'text, text, boolean',
    'operator_delete_versions': 'text, text[]',
    'operator_delete_package': 'text',
}

SQL = [
    f"""CREATE FUNCTION operator_put_package(p_name text, p_display_name text, p_added boolean,
                                         p_description text, p_aliases text[], p_who text)
    RETURNS void LANGUAGE sql {DEFINER} AS $$
    INSERT INTO operator_packages (name, display_name, added, description, aliases, added_by)
    VALUES (p_name, p_display_name, p_added, p_description, p_aliases, p_who)
    ON CONFLICT (name) DO UPDATE SET added = operator_packages.added OR excluded.added,
      description = coalesce(excluded.description, operator_packages.description),
      aliases = ARRAY(SELECT DISTINCT unnest(operator_packages.aliases || excluded.aliases)
                      ORDER BY 1) $$""",

    f"""CREATE FUNCTION operator_put_version(p_package text, p_version text, p_released bigint,
                                         p_yanked boolean, p_who text)
    RETURNS void LANGUAGE sql {DEFINER} AS $$
    INSERT INTO operator_versions (package, version, released, yanked, added_by)
    VALUES (p_package, p_version, p_released, p_yanked, p_who)
    ON CONFLICT (package, version) DO NOTHING $$""",

    f"""CREATE FUNCTION operator_set_yanked(p_package text, p_version text, p_yanked boolean)
    RETURNS void LANGUAGE sql {DEFINER} AS $$
    UPDATE operator_versions SET yanked = p_yanked
    WHERE package = p_package AND version = p_version $$""",

    f"""CREATE FUNCTION operator_delete_versions(p_package text, p_versions text[])
    RETURNS integer LANGUAGE sql {DEFINER} AS $$
    WITH gone AS (DELETE FROM operator_versions
                  WHERE package = p_package AND version = ANY(p_versions) RETURNING 1)
    SELECT count(*)::integer FROM gone $$""",

    f"""CREATE FUNCTION operator_delete_package(p_package text)
    RETURNS integer LANGUAGE sql {DEFINER} AS $$
    WITH versions_gone AS (DELETE FROM operator_versions WHERE package = p_package
                           RETURNING 1),
         package_gone AS (DELETE FROM operator_packages WHERE name = p_package RETURNING 1)
    SELECT ((SELECT count(*) FROM versions_gone) + (SELECT count(*) FROM package_gone))::integer
    $$""",
]


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")
    definer.create(SQL, FUNCTIONS)


def downgrade() -> None:
    definer.drop(FUNCTIONS)
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW {name}")
