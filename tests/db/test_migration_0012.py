"""Migration 0012 and the re-parse it enables: a deployment's ``malformed_rows``, recorded by
piw before it knew warehouse's release quarantine (parser 1, no ``parser`` column), are
parsed again by the upgraded reorderer and applied where they belong in time."""

from alembic import command
from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.db import alembic_config
from piw_services.reorderer import queries, store

NOW = 2_000_000_000
FLUSH_ALL = -10**12
ROWS = [["Shady", None, 1_300_000_001, "create", 1],
        ["Shady", "1.0", 1_300_000_002, "new release", 2],
        ["Shady", "1.0", 1_300_000_003, "add source file shady-1.0.tar.gz", 3],
        ["Shady", "2.0", 1_300_000_004, "new release", 4],
        ["Shady", "2.0", 1_300_000_005, "add source file shady-2.0.tar.gz", 5],
        # 6 and 8: what piw of parser 1 recorded as malformed
        ["Shady", "1.0", 1_300_000_009, "yank release", 9]]
#: As piw of migration 0011 wrote them (_record_malformed: json.dumps of the raw row).
OLD_MALFORMED = [
    (6, "unknown action 'release quarantined'",
     '["Shady", "2.0", 1300000006, "release quarantined", 6]'),
    (8, "unknown action 'release quarantined'",
     '["Shady", "1.0", 1300000008, "release quarantined", 8]'),
    (10, "unknown action 'frobnicate'", '["Shady", null, 1300000010, "frobnicate", 10]'),
]


def test_rows_recorded_by_an_older_parser_are_applied_after_the_upgrade(scratch_db):
    url, engine = scratch_db
    # the catalog as piw of 0011 left it: stored by today's code, then the schema taken back
    command.upgrade(alembic_config(url), "head")
    with Session(engine) as s, s.begin():
        store.ingest(s, ROWS, FLUSH_ALL, now=NOW)
    command.downgrade(alembic_config(url), "0011")
    with Session(engine) as s, s.begin():
        for serial, reason, raw in OLD_MALFORMED:
            s.execute(text("INSERT INTO malformed_rows (serial, reason, raw) "
                           "VALUES (:s, :r, :raw)"), {"s": serial, "r": reason, "raw": raw})
        s.execute(text("UPDATE upstream_state SET last_serial = 10"))
    with Session(engine) as s:  # (package_state reads tables of later migrations too)
        before = dict(s.execute(text(
            "SELECT version, quarantined FROM versions WHERE package = 'shady'")).all())
    assert before == {"1.0": False, "2.0": False}

    command.upgrade(alembic_config(url), "head")
    with Session(engine) as s:
        assert s.execute(text("SELECT serial, parser FROM malformed_rows ORDER BY serial")
                         ).all() == [(6, 1), (8, 1), (10, 1)]
    with Session(engine) as s, s.begin():  # the upgraded reorderer's first tick
        assert store.reparse_malformed(s, FLUSH_ALL, now=NOW) == 3
    with Session(engine) as s:
        after = queries.package_state(s, "shady")["versions"]
        # 1.0: quarantined (8), then yanked (9): both facts hold
        assert after["1.0"]["quarantined"] and after["1.0"]["yanked"]
        assert after["2.0"]["quarantined"]
        events = [e for (batch,) in s.execute(text("SELECT events FROM outbox ORDER BY seq"))
                  for e in batch]
        assert [(e["version"], e["serial"]) for e in events
                if e["type"] == "version_quarantined"] == [("2.0", 6), ("1.0", 8)]
        # what this parser cannot use either stays, judged by it
        assert s.execute(text("SELECT serial, parser, reason FROM malformed_rows")).all() == [
            (10, 2, "unknown action 'frobnicate'")]
        assert store.last_serial(s) == 10
