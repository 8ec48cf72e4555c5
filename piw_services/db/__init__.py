"""Database access shared by the master services: engines, schema checks, migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaNotCurrent(RuntimeError):
    """The database is missing or at another migration than the code expects."""


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine whose pool never exceeds *pool_size* (nameko's max_workers)."""
    return create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()


def check_schema(engine: Engine) -> None:
    """Refuse to run against a database that is not at the migration this code expects."""
    head = head_revision()
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # connection refused, unknown database, ...
        raise SchemaNotCurrent(
            f"cannot open database {engine.url.render_as_string(hide_password=True)}: {exc}.\n"
            "Create and migrate it with: piw-initdb -c <config>") from exc
    if current != head:
        raise SchemaNotCurrent(
            f"database {engine.url.render_as_string(hide_password=True)} is at schema revision "
            f"{current or 'none'}, this code needs {head}. Run: piw-initdb -c <config>")


def schema_problem(url: str) -> str | None:
    """None when the database at *url* is at this code's schema, else what is wrong (for
    commands that must refuse to run, with a message that says what to do)."""
    engine = make_engine(url, pool_size=1)
    try:
        check_schema(engine)
    except SchemaNotCurrent as exc:
        return str(exc)
    finally:
        engine.dispose()
    return None


def create_database(url: str) -> bool:
    """Create the database *url* names if it does not exist; True when it was created."""
    target = make_url(url)
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


def upgrade(url: str) -> None:
    """Bring the database at *url* to the newest migration."""
    command.upgrade(alembic_config(url), "head")
