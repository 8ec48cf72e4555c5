"""A database of its own for a migration test, dropped afterwards."""

import uuid

import pytest
from sqlalchemy.engine import make_url

from piw_services.db import create_database, make_engine
from tests.conftest import BASE_DB_URL


@pytest.fixture
def scratch_db():
    """(url, engine) of a new, empty database: the test migrates it where it wants."""
    url = make_url(BASE_DB_URL)
    url = url.set(database=f"{url.database}_mig_{uuid.uuid4().hex[:8]}")
    rendered = url.render_as_string(hide_password=False)
    create_database(rendered)
    engine = make_engine(rendered)
    yield rendered, engine
    engine.dispose()
    admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    admin.dispose()
