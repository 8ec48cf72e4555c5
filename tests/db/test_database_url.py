"""DB_URL as operators write it: ``postgresql://`` opens with psycopg2 (the driver piw ships),
any other driver is refused at once with the URL to write, and a database that cannot be
reached is one line from every command, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from piw_services.db import DRIVER, BadDatabaseURL, database_url, make_engine, schema_problem
from tests.conftest import free_port

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("written", ["postgresql://u:pw@db:5432/piw", "postgres://u:pw@db/piw",
                                     "postgresql+psycopg2://u:pw@db:5432/piw"])
def test_what_postgresql_users_write_opens_with_psycopg2(written):
    url = database_url(written)
    assert url.drivername == DRIVER and url.password == "pw" and url.database == "piw"
    assert make_engine(written).dialect.driver == "psycopg2"


@pytest.mark.parametrize("written, says", [
    ("postgresql+psycopg://u:pw@db/piw", "piw ships the psycopg2 driver only"),
    ("postgresql+asyncpg://u:pw@db/piw", "piw ships the psycopg2 driver only"),
    ("mysql://u:pw@db/piw", "piw needs PostgreSQL"),
    ("sqlite:///piw.db", "piw needs PostgreSQL"),
    ("db.example.org:5432/piw", "is not a database URL"),
    ("not a url at all with s3cret@", "is not a database URL"),
])
def test_other_urls_are_refused_with_the_url_to_write(written, says):
    with pytest.raises(BadDatabaseURL) as refused:
        database_url(written)
    message = str(refused.value)
    assert says in message and "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DATABASE" in message
    assert "pw@" not in message  # no password in a message


def initdb(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PIW_DB_URL": url}
    return subprocess.run([str(BIN / "piw-initdb"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_piw_initdb_takes_a_plain_postgresql_url(db_url):
    """The test database (made by the fixture) reached as postgresql://: current already."""
    plain = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    proc = initdb(plain)
    assert proc.returncode == 0, proc.stderr
    assert "schema at" in proc.stderr
    assert initdb(plain, "--check").returncode == 0
    assert schema_problem(plain) is None


def test_a_database_that_cannot_be_reached_is_one_line(tmp_path):
    url = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/piw"
    for command in (["piw-initdb"], ["piw-initdb", "--check"], ["piw-master"],
                    ["piw-audit", "--www", str(tmp_path)]):
        proc = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True,
                              text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                           "PIW_DB_URL": url})
        assert proc.returncode in (1, 2), (command, proc.stderr)
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
        assert "cannot reach the database postgresql+psycopg2://postgres:***@127.0.0.1:" \
               in proc.stderr and "Connection refused" in proc.stderr, (command, proc.stderr)
        assert "s3cret" not in proc.stderr


def test_a_url_for_another_driver_stops_every_command_at_once(tmp_path):
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/piw"
    for command in (["piw-initdb"], ["piw-master"], ["piw-audit", "--www", str(tmp_path)]):
        proc = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True,
                              text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                           "PIW_DB_URL": url})
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
        assert "piw ships the psycopg2 driver only: write postgresql+psycopg2://" \
               in proc.stderr, (command, proc.stderr)
