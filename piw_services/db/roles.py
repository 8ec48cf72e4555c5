"""A database role per service (issue 18): an owner role that owns the schema and runs the
migrations, and one login role per master service that uses the database, with exactly the
privileges it needs; piw-initdb makes them (idempotently) and grants after every upgrade, so
a new table gets its grants.

PostgreSQL roles belong to the whole cluster, not to one database, so each name starts with a
prefix of the database's (``piw``: ``piw_owner``, ``piw_admin``, ...): two piw databases on
one cluster (tests make one per run) never share a role.

What a service's role may do (docs/security.md):

- all of SELECT, INSERT, UPDATE, DELETE on the tables it owns (db/ownership.py), and their
  sequences;
- SELECT on the tables and views it reads (:data:`READS`: through the owners' queries.py),
  and on alembic_version (a service refuses to start on a schema it does not expect);
- the outbox: INSERT and SELECT (producers write their events, consumers catch up), and its
  own row of consumer_marks (the table: SELECT, INSERT, UPDATE);
- EXECUTE on the owners' SECURITY DEFINER functions it calls (:data:`CALLS`): the changes it
  may make to another's data (db/definer.py);
- nothing else: no DDL (the schema's owner is :func:`owner_role`), no TRUNCATE.

The web service and upstream do not use the database and get no role.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from sqlalchemy.engine import Connection

from piw_services.db.ownership import CATALOG_VIEWS, OWNERS, SHARED

#: Alembic's record of the schema's revision: every service checks it at start
VERSION_TABLE = "alembic_version"
#: the services that connect to the database, each with a role of its own
SERVICES = ("reorderer", "build_dispatch", "file_manager", "index", "stats", "admin", "audit")

_CATALOG = frozenset({"packages", "versions", "upstream_files", "operator_packages",
                      "operator_versions"})
_BUILDS = frozenset({"build_abis", "build_versions", "build_package_skips", "build_targets",
                     "builds", "builders", "image_packages"})
#: SELECT on other services' tables (and the catalog views), by what the service shows or checks
READS: dict[str, frozenset[str]] = {
    # which versions have a build waiting (build_dispatch.queries.WAITING_VERSIONS)
    "reorderer": CATALOG_VIEWS | {"build_targets"},
    # a claim's Requires-Python and quarantine, a job's upstream wheels (through the views)
    "build_dispatch": CATALOG_VIEWS,
    # a commit's job and target, whether the version is alive and upstream serves the name
    "file_manager": CATALOG_VIEWS | _CATALOG | {"build_targets", "build_abis"},
    # every page: the catalog, builds and logs, files, download counts
    "index": CATALOG_VIEWS | _CATALOG | _BUILDS | {"files", "downloads_daily",
                                                    "downloads_monthly"},
    # /status/: every service's queues and counts
    "stats": CATALOG_VIEWS | _CATALOG | _BUILDS | {"files", "held_rows", "malformed_rows",
                                                    "upstream_state", "blocked_builders",
                                                    "index_dirty", "image_loads"},
    # operators' requests are checked against everything they change; it waits for the index
    "admin": CATALOG_VIEWS | _CATALOG | _BUILDS | {"files", "index_dirty", "held_rows"},
    # piw-audit checks every service's data against the others' and the disk
    "audit": CATALOG_VIEWS | _CATALOG | _BUILDS | {"files", "index_dirty", "held_rows",
                                                    "upstream_state", "malformed_rows"},
}
#: the SECURITY DEFINER functions each service calls (migrations 0017, 0018, 0019)
CALLS: dict[str, frozenset[str]] = {
    "build_dispatch": frozenset({"build_priority"}),
    "admin": frozenset({"build_set_skip", "build_revoke", "build_add_targets",
                        "build_import_job", "build_record_version", "build_forget_versions",
                        "build_current_build", "build_skip_build", "build_hold",
                        "stats_download_versions", "stats_delete_downloads",
                        "operator_put_package", "operator_put_version", "operator_set_yanked",
                        "operator_delete_versions", "operator_delete_package"}),
}
#: services that consume or produce through the outbox (audit only reads)
OUTBOX_USERS = frozenset(SERVICES) - {"audit"}

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def prefix_of(database: str) -> str:
    """The role-name prefix of *database*: its name, lower case, other characters as ``_``."""
    prefix = re.sub(r"[^a-z0-9_]", "_", database.lower())
    return prefix if _NAME.fullmatch(prefix) else f"piw_{prefix}"


def owner_role(database: str) -> str:
    return f"{prefix_of(database)}_owner"


def service_role(database: str, service: str) -> str:
    return f"{prefix_of(database)}_{service}"


def all_roles(database: str) -> list[str]:
    return [owner_role(database)] + [service_role(database, s) for s in SERVICES]


def _exists(conn: Connection, role: str) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                (role,)).first() is not None


def ensure_roles(conn: Connection, database: str) -> None:
    """Make the owner role (no login) and the services' login roles if missing, and give the
    schema's objects to the owner (objects made by an older piw-initdb, as the bootstrap user,
    change hands here). Needs a superuser, or a role with CREATEROLE that owns the schema."""
    owner = owner_role(database)
    if not _exists(conn, owner):
        conn.exec_driver_sql(f'CREATE ROLE "{owner}" NOLOGIN')
    for service in SERVICES:
        role = service_role(database, service)
        if not _exists(conn, role):
            conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    conn.exec_driver_sql(f'GRANT "{owner}" TO CURRENT_USER')
    conn.exec_driver_sql(f'GRANT CREATE, USAGE ON SCHEMA public TO "{owner}"')
    give_to_owner(conn, database)


def give_to_owner(conn: Connection, database: str) -> None:
    """The owner role owns every table, view, sequence and function of schema public."""
    owner = owner_role(database)
    for kind, name, args in conn.exec_driver_sql(
            "SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'S' THEN 'SEQUENCE' "
            "ELSE 'TABLE' END, c.relname, NULL FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN "
            "('r', 'v', 'S', 'p') AND pg_get_userbyid(c.relowner) <> %s "
            # a serial's or identity's sequence follows its table (ALTER SEQUENCE refuses it)
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
            "AND d.objid = c.oid AND d.deptype IN ('a', 'i') AND c.relkind = 'S') "
            "UNION ALL SELECT 'FUNCTION', p.proname, pg_get_function_identity_arguments(p.oid) "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> %s",
            (owner, owner)).all():
        what = f'"{name}"' if args is None else f'"{name}"({args})'
        conn.exec_driver_sql(f'ALTER {kind} {what} OWNER TO "{owner}"')


def grant(conn: Connection, database: str) -> None:
    """Give each service's role exactly its privileges (after every upgrade: a new table or
    function gets its grants; a privilege no longer listed is taken back)."""
    conn.exec_driver_sql(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
    conn.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    tables = [r[0] for r in conn.exec_driver_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'p')")]
    functions = conn.exec_driver_sql(
        "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'").all()
    for service in SERVICES:
        role = f'"{service_role(database, service)}"'
        conn.exec_driver_sql(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO {role}')
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        conn.exec_driver_sql(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {role}")
        writes = OWNERS.get(service, frozenset())
        for table in tables:
            if table in writes:
                privileges = "SELECT, INSERT, UPDATE, DELETE"
            elif table == "outbox" and service in OUTBOX_USERS:
                privileges = "SELECT, INSERT"
            elif table == "consumer_marks" and service in OUTBOX_USERS:
                privileges = "SELECT, INSERT, UPDATE"
            elif table in READS.get(service, frozenset()) or table in SHARED | {VERSION_TABLE}:
                privileges = "SELECT"
            else:
                continue
            conn.exec_driver_sql(f'GRANT {privileges} ON "{table}" TO {role}')
        for sequence, table in conn.exec_driver_sql(
                "SELECT s.relname, t.relname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
                "JOIN pg_class t ON t.oid = d.refobjid WHERE s.relkind = 'S' "
                "AND d.deptype IN ('a', 'i')").all():
            if table in writes or (table == "outbox" and service in OUTBOX_USERS):
                conn.exec_driver_sql(f'GRANT USAGE, SELECT ON SEQUENCE "{sequence}" TO {role}')
        for name, args in functions:
            if name in CALLS.get(service, frozenset()):
                conn.exec_driver_sql(f'GRANT EXECUTE ON FUNCTION "{name}"({args}) TO {role}')


def drop_roles(conn: Connection, database: str) -> None:
    """Drop the database's roles (a test database's, before or after dropping it): what they
    own or were granted in *conn*'s database goes with them."""
    for role in reversed(all_roles(database)):
        if _exists(conn, role):
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')


def set_passwords(conn: Connection, database: str, host: str, port: int, passfile: Path,
                  rotate: bool = False) -> list[str]:
    """Give each service's role a random password (those the libpq password file *passfile*
    has no line for, or all with *rotate*), write the file (mode 0600: one
    ``host:port:database:role:password`` line per role) and return the roles changed. The
    services' DB_SERVICE_URL names the file (``?passfile=...``)."""
    known: dict[str, str] = {}
    if passfile.exists():
        for line in passfile.read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 5 and fields[2] == database:
                known[fields[3]] = fields[4]
    changed = []
    for service in SERVICES:
        role = service_role(database, service)
        if rotate or role not in known:
            known[role] = secrets.token_urlsafe(24).replace("-", "").replace("_", "")
            conn.exec_driver_sql(f"ALTER ROLE \"{role}\" PASSWORD '{known[role]}'")
            changed.append(role)
    others = [line for line in (passfile.read_text().splitlines() if passfile.exists() else [])
              if len(line.split(":")) != 5 or line.split(":")[2] != database]
    passfile.parent.mkdir(parents=True, exist_ok=True)
    temp = passfile.with_name(passfile.name + ".new")
    temp.touch(mode=0o600)
    temp.chmod(0o600)
    temp.write_text("".join(f"{line}\n" for line in others) + "".join(
        f"{host}:{port}:{database}:{role}:{password}\n" for role, password in known.items()))
    temp.replace(passfile)
    return changed
