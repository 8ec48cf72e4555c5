"""The database roles piw-initdb makes (piw_services/db/roles.py, issue 18): connected as each
service's role, table by table, what the service must do works and everything else is refused
by PostgreSQL itself (permission denied), and the role may not change the schema.

Each statement runs in a transaction rolled back afterwards and matches no row (``WHERE
false``): PostgreSQL checks privileges before it looks at a row, so a refusal here is the
same refusal a real write would get, and nothing changes.
"""

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from piw_services.db import roles
from piw_services.db.ownership import CATALOG_VIEWS, OWNERS, SHARED

TABLES = sorted({t for tables in OWNERS.values() for t in tables} | SHARED
                | {roles.VERSION_TABLE})


@pytest.fixture(scope="module")
def as_role(db_url):
    """An engine per role, connected as that role (trust auth: no password here)."""
    database = make_url(db_url).database
    engines = {}

    def connect(service):
        if service not in engines:
            url = make_url(db_url).set(username=roles.service_role(database, service))
            engines[service] = create_engine(url)
        return engines[service]

    yield connect
    for engine in engines.values():
        engine.dispose()


def allowed(engine, sql) -> bool:
    """Whether the role may run *sql* (False: PostgreSQL refuses it for want of a privilege,
    SQLSTATE 42501: "permission denied", "must be owner")."""
    with engine.connect() as conn:
        try:
            conn.execute(text(sql))
        except ProgrammingError as exc:
            assert exc.orig.pgcode == "42501", exc
            return False
        finally:
            conn.rollback()
    return True


def expected(service, table):
    if table in OWNERS.get(service, frozenset()):
        return {"select", "insert", "update", "delete"}
    if table == "outbox" and service in roles.OUTBOX_USERS:
        return {"select", "insert"}
    if table == "consumer_marks" and service in roles.OUTBOX_USERS:
        return {"select", "insert", "update"}
    if table in roles.READS[service] or table in SHARED | {roles.VERSION_TABLE}:
        return {"select"}
    return set()


def first_column(engine, table):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
            "ORDER BY ordinal_position LIMIT 1"), {"t": table}).scalar()


@pytest.mark.parametrize("service", roles.SERVICES)
def test_each_role_may_do_exactly_what_its_service_needs(service, as_role, db_engine):
    engine = as_role(service)
    wrong = []
    for table in TABLES:
        column = first_column(db_engine, table)
        tries = {
            "select": f"SELECT 1 FROM {table} WHERE false",
            "insert": f"INSERT INTO {table} ({column}) SELECT {column} FROM {table} WHERE false",
            "update": f"UPDATE {table} SET {column} = {column} WHERE false",
            "delete": f"DELETE FROM {table} WHERE false",
        }
        may = {what for what, sql in tries.items() if allowed(engine, sql)}
        if may != expected(service, table):
            wrong.append(f"{table}: may {sorted(may)}, should {sorted(expected(service, table))}")
        if allowed(engine, f"TRUNCATE {table}"):
            wrong.append(f"{table}: may TRUNCATE")
    for view in sorted(CATALOG_VIEWS):
        if allowed(engine, f"SELECT 1 FROM {view} WHERE false") != (view in roles.READS[service]):
            wrong.append(f"view {view}")
    assert not wrong, wrong


@pytest.mark.parametrize("service", roles.SERVICES)
def test_no_role_changes_the_schema(service, as_role):
    engine = as_role(service)
    assert not allowed(engine, "CREATE TABLE intruder (x int)")
    assert not allowed(engine, "ALTER TABLE files ADD COLUMN intruder int")
    assert not allowed(engine, "DROP VIEW live_versions")


def test_the_web_and_stats_roles_cannot_touch_the_catalog_builds_or_files(as_role):
    """The issue's example: the internet-facing stats service may read for /status/, never
    write packages, versions, builds or files; the index cannot write the catalog."""
    for service, table in [("stats", "packages"), ("stats", "versions"), ("stats", "builds"),
                           ("stats", "files"), ("index", "packages"), ("index", "versions"),
                           ("index", "upstream_files"), ("index", "files")]:
        assert not allowed(as_role(service), f"DELETE FROM {table} WHERE false"), (service, table)


def test_admin_changes_others_data_only_through_their_functions(as_role):
    admin, index = as_role("admin"), as_role("index")
    assert allowed(admin, "SELECT build_set_skip('nothing-here', '0', NULL)")
    assert allowed(admin, "SELECT stats_delete_downloads('nothing-here', '{}')")
    assert not allowed(admin, "DELETE FROM build_targets WHERE false")
    assert not allowed(admin, "DELETE FROM downloads WHERE false")
    assert not allowed(index, "SELECT build_set_skip('nothing-here', '0', NULL)")
    assert not allowed(index, "SELECT stats_delete_downloads('nothing-here', '{}')")


def test_piw_initdb_again_changes_nothing_and_roles_are_named_after_the_database(db_url,
                                                                                 db_engine):
    from piw_services.db import upgrade

    upgrade(db_url, roles=True)  # idempotent: an upgrade runs it again
    database = make_url(db_url).database
    with db_engine.connect() as conn:
        found = set(conn.execute(text(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE :p"),
            {"p": roles.prefix_of(database) + "\\_%"}).scalars())
        owners = set(conn.execute(text(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars())
    assert found == set(roles.all_roles(database))
    assert owners == {roles.owner_role(database)}


def test_piw_initdb_passfile_gives_each_role_a_password_and_rotates_them(db_url, db_engine,
                                                                        tmp_path, monkeypatch):
    from piw_services.cli import initdb

    database = make_url(db_url).database
    passfile = tmp_path / "pgpass"
    passfile.write_text("otherhost:5432:otherdb:someone:keep-me\n")
    monkeypatch.setenv("PIW_DB_URL", db_url)

    def lines():
        return {fields[3]: fields[4] for fields in (
            line.split(":") for line in passfile.read_text().splitlines()) if
            fields[2] == database}

    def hashed():
        with db_engine.connect() as conn:
            return dict(conn.execute(text(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(:r)"),
                {"r": list(first)}).all())

    assert initdb.main(["--passfile", str(passfile)]) == 0
    first = lines()
    assert set(first) == {roles.service_role(database, s) for s in roles.SERVICES}
    assert passfile.stat().st_mode & 0o777 == 0o600
    assert "otherhost:5432:otherdb:someone:keep-me" in passfile.read_text()
    before = hashed()
    assert all(h and h.startswith("SCRAM-SHA-256$") for h in before.values())
    assert initdb.main(["--passfile", str(passfile)]) == 0  # an upgrade keeps them
    assert lines() == first and hashed() == before
    assert initdb.main(["--passfile", str(passfile), "--rotate"]) == 0
    rotated = lines()
    assert all(rotated[r] != first[r] for r in first) and hashed() != before
    with pytest.raises(SystemExit) as refused:  # argparse: --rotate needs --passfile
        initdb.main(["--rotate"])
    assert refused.value.code == 2


def test_a_database_made_before_roles_is_upgraded_with_them(db_url):
    """A deployment's database whose objects the bootstrap user owns (made by a piw-initdb
    before roles, as this machine's demo database was) gets its roles on upgrade: tables,
    views, and the serial sequences that follow their tables (ALTER SEQUENCE refuses those)."""
    from piw_services.db import create_database, upgrade
    from tests.conftest import drop_database

    url = make_url(db_url)
    url = url.set(database=f"{url.database}_old").render_as_string(hide_password=False)
    create_database(url)
    try:
        upgrade(url)  # the bootstrap user's objects, no roles
        upgrade(url, roles=True)
        database = make_url(url).database
        engine = create_engine(url)
        with engine.connect() as conn:
            owners = set(conn.execute(text(
                "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace "
                "n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                "AND c.relkind IN ('r', 'v', 'S')")).scalars())
        engine.dispose()
        assert owners == {roles.owner_role(database)}
    finally:
        drop_database(url)
