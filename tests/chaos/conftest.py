"""Chaos tests (issue 8): the whole system on real RabbitMQ, PostgreSQL, processes and builds,
with parts killed, restarted or lying. Shared here: the e2e ``system`` fixture, a seeded random
source that says its seed, a replay that needs no builds, and the end-state checks every chaos
test makes."""

import os
import random
import re
from collections import Counter

import pytest
from sqlalchemy import text

from piw_services.fake_pypi.history import synthetic_history
from piw_services.reorderer import store
from piw_services.reorderer.parse import Row, parse_row
from piw_services.site.tree import TEMP
from tests.conftest import wait_for
from tests.e2e.conftest import builds, files, sha256, store_files, system, upstream_packages
from tests.reorderer.reference import reference, view

__all__ = ["system", "upstream_packages"]  # the e2e fixtures, for the tests here

#: the master services a chaos test kills (admin has no state of its own to lose)
SERVICES = ("upstream", "reorderer", "build_dispatch", "file_manager", "index", "web", "stats")


@pytest.fixture
def chaos_rng(request):
    """A random source for kill points; its seed is printed and recorded so a failure can be
    replayed with ``PIW_CHAOS_SEED=<seed>``."""
    seed = int(os.environ.get("PIW_CHAOS_SEED") or random.randrange(2 ** 32))
    print(f"chaos seed: PIW_CHAOS_SEED={seed}")
    request.node.user_properties.append(("chaos_seed", seed))
    return random.Random(seed)


_SOURCE = re.compile(r"^(add source file|remove file) (\S+)\.tar\.gz$")


def unbuildable_history(n, seed, first_serial=1):
    """*n* rows of piw-fake-pypi's synthetic history (timestamps running backwards, removals,
    names re-registered under other spellings, role changes) from *first_serial* on, with every
    source file turned into a wheel upstream serves: the catalog gets all of it, and nothing
    in it is buildable, so the replay costs no builds."""
    out = []
    for event in synthetic_history(n, seed=seed):
        match = _SOURCE.match(event["action"])
        if match:
            verb = "add py2 file" if match.group(1) == "add source file" else "remove file"
            event = dict(event, action=f"{verb} {match.group(2)}-py2-none-any.whl")
        out.append(dict(event, serial=event["serial"] + first_serial - 1))
    return out


def expected_catalog(events):
    """The catalog an uninterrupted run ends with: the rows applied one by one in
    (timestamp, serial) order by the reorderer's naive reference model."""
    rows = [r for r in (parse_row([e["name"], e["version"], e["timestamp"], e["action"],
                                   e["serial"]]) for e in events) if isinstance(r, Row)]
    return reference(rows)


def catalog(db):
    """The reorderer's catalog in the database, in the reference model's shape."""
    with db() as s:
        cur = s.connection().connection.dbapi_connection.cursor()
        cur.execute("SELECT name FROM packages")
        return view(store.load_packages(cur, [n for (n,) in cur.fetchall()]))


def assert_builds_and_files_agree(system, db):
    """No build recorded twice (by job, or for one version and ABI), every file row on disk
    with its hash and every wheel on disk a row, and piw-audit finds nothing. Returns the
    builds."""
    recorded = builds(db)
    jobs = Counter(b["job_id"] for b in recorded)
    targets = Counter((b["package"], b["version"], b["abi"]) for b in recorded)
    assert [j for j, n in jobs.items() if n > 1] == [], recorded
    assert [t for t, n in targets.items() if n > 1] == [], recorded
    on_disk, rows = store_files(system.www), files(db)
    assert set(on_disk) == set(rows), (set(on_disk) ^ set(rows))
    for name, path in on_disk.items():
        assert sha256(path) == rows[name].sha256, name
    uploads = system.www / ".uploads"
    assert not (uploads.exists() and [p for p in uploads.iterdir() if p.suffix == ".part"])
    wait_for(lambda: not temp_files(system.www), 30, what="no temp files of page writes",
             describe=lambda: temp_files(system.www))
    system.audit()
    return recorded


def temp_files(www):
    """Temp files of page writes (index, stats) in the www tree: none once it is quiet."""
    return [p for p in www.rglob("*.tmp") if TEMP.match(p.name) and ".uploads" not in p.parts]


def held_and_serial(db):
    with db() as s:
        return s.execute(text("SELECT (SELECT count(*) FROM held_rows), last_serial "
                              "FROM upstream_state WHERE id = 1")).one()
