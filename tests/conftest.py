"""Shared fixtures: a real PostgreSQL database (migrated once per run) and a real RabbitMQ.

eventlet must be monkey-patched before anything imports sockets, or the first nameko container
test hangs (shared/notes/nameko-stack.md).
"""

import os
import uuid
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import eventlet

eventlet.monkey_patch()

import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from piw_services.db import create_database, make_engine, upgrade  # noqa: E402

BASE_DB_URL = os.environ.get("PIW_TEST_DB_URL",
                             "postgresql+psycopg2://postgres@127.0.0.1:5432/piw_test")
TABLES = ("upstream_rows", "malformed_rows", "upstream_files", "versions", "packages", "outbox",
          "consumer_marks")


@pytest.fixture(scope="session")
def db_url():
    """A database of its own for this test run, migrated to head, dropped at the end."""
    url = make_url(BASE_DB_URL)
    url = url.set(database=f"{url.database}_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    rendered = url.render_as_string(hide_password=False)
    create_database(rendered)
    upgrade(rendered)
    yield rendered
    admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def db_engine(db_url):
    engine = make_engine(db_url, pool_size=10)
    yield engine
    engine.dispose()


def reset_db(engine):
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE upstream_state SET last_serial = 0, max_ts = 0"))


@pytest.fixture
def db(db_engine):
    """A session factory on an empty catalog."""
    reset_db(db_engine)
    return sessionmaker(db_engine)
