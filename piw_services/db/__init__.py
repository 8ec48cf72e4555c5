"""Database access shared by the master services: engines, schema checks, migrations."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


#: The one driver piw ships (psycopg2-binary, in the master extra).
DRIVER = "postgresql+psycopg2"
#: What to write, for messages.
URL_FORM = f"{DRIVER}://USER:PASSWORD@HOST:5432/DATABASE (or postgresql://...)"


class SchemaNotCurrent(RuntimeError):
    """The database is missing or at another migration than the code expects."""


class BadDatabaseURL(ValueError):
    """A DB_URL piw cannot open; the text says which URL to write."""


def database_url(url: str | URL) -> URL:
    """*url* as piw opens it. ``postgresql://`` and ``postgres://``, what every PostgreSQL user
    writes, mean psycopg2 (SQLAlchemy 2.1 would pick psycopg 3, which piw does not ship); any
    other driver or database is refused with a :class:`BadDatabaseURL` that says what to
    write, before anything tries to connect."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        masked = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(url))
        raise BadDatabaseURL(f"DB_URL {masked!r} is not a database URL: write {URL_FORM}") \
            from None
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername=DRIVER)
    if parsed.drivername != DRIVER:
        shown = parsed.render_as_string(hide_password=True)
        needs = ("piw ships the psycopg2 driver only" if parsed.get_backend_name() ==
                 "postgresql" else "piw needs PostgreSQL")
        raise BadDatabaseURL(f"DB_URL {shown}: {needs}: write {URL_FORM}")
    return parsed


def shown_url(url: str | URL) -> str:
    """*url* for messages: its password hidden."""
    try:
        return database_url(url).render_as_string(hide_password=True)
    except BadDatabaseURL:
        return "(a bad DB_URL)"


def db_message(exc: Exception, url: str | URL) -> str:
    """One line for an error of the database at *url*: unreachable (with the driver's own
    first line: refused, unknown host, bad password, no such database) or another failure."""
    if isinstance(exc, BadDatabaseURL):
        return str(exc)
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
    if isinstance(exc, OperationalError):
        return f"cannot reach the database {shown_url(url)}: {first}"
    return f"database {shown_url(url)}: {first} (is its schema current? piw-initdb --check)"


def make_engine(url: str | URL, pool_size: int = 5) -> Engine:
    """An engine whose pool never exceeds *pool_size* (nameko's max_workers)."""
    return create_engine(database_url(url), pool_size=pool_size, max_overflow=0,
                         pool_pre_ping=True)


def alembic_config(url: str | URL) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    rendered = database_url(url).render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config(f"{DRIVER}://")).get_current_head()


def check_schema(engine: Engine) -> None:
    """Refuse to run against a database that is not at the migration this code expects."""
    head = head_revision()
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:  # connection refused, unknown database, ...
        raise SchemaNotCurrent(
            f"{db_message(exc, engine.url)}.\nIf it does not exist yet, create and migrate "
            "it with: piw-initdb") from exc
    if current != head:
        raise SchemaNotCurrent(
            f"database {engine.url.render_as_string(hide_password=True)} is at schema revision "
            f"{current or 'none'}, this code needs {head}. Run: piw-initdb")


def schema_problem(url: str) -> str | None:
    """None when the database at *url* is at this code's schema, else what is wrong (for
    commands that must refuse to run, with a message that says what to do)."""
    try:
        engine = make_engine(url, pool_size=1)
    except BadDatabaseURL as exc:
        return str(exc)
    try:
        check_schema(engine)
    except SchemaNotCurrent as exc:
        return str(exc)
    finally:
        engine.dispose()
    return None


def create_database(url: str) -> bool:
    """Create the database *url* names if it does not exist; True when it was created."""
    target = database_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %s", (target.database,)).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
            return not exists
    finally:
        admin.dispose()


def upgrade(url: str, roles: bool = False) -> None:
    """Bring the database at *url* to the newest migration. With *roles* (piw-initdb), first
    make the database's roles and give its objects to the owner role, run the migrations as
    that role, then grant each service's role its privileges (piw_services/db/roles.py)."""
    from piw_services.db import roles as db_roles

    cfg = alembic_config(url)
    database = str(database_url(url).database)
    if roles:
        engine = create_engine(database_url(url))
        try:
            with engine.begin() as conn:
                db_roles.ensure_roles(conn, database)
            cfg.attributes["role"] = db_roles.owner_role(database)
            command.upgrade(cfg, "head")
            with engine.begin() as conn:
                db_roles.give_to_owner(conn, database)
                db_roles.grant(conn, database)
        finally:
            engine.dispose()
    else:
        command.upgrade(cfg, "head")
