"""Migration 0008 carries a deployment's rows from ABI keys (cp311) to build target keys
(cp311-linux_aarch64), on a database of its own migrated to 0007 first."""

from alembic import command
from sqlalchemy import text

from piw_services.db import alembic_config

OLD_ROWS = [
    "INSERT INTO build_abis (abi, distro) VALUES ('cp311', 'bookworm'), ('cp313', 'trixie')",
    "INSERT INTO builders (id, label, abi, info, preinstalled) VALUES "
    "(1, 'pi-old', 'cp311', '{\"platform\": \"linux_armv7l\"}', '[]'), "
    "(2, 'pi-new', 'cp311', '{\"platform\": \"linux_aarch64\"}', '[]')",
    "INSERT INTO build_targets (package, version, abi, state, job_id, priority, builder_id) "
    "VALUES ('foo', '1.0', 'cp311', 'built', 'j1', 5, NULL), "
    "('foo', '2.0', 'cp311', 'queued', 'j2', 5, NULL), "
    "('foo', '2.0', 'cp313', 'building', 'j3', 5, 2)",
    "INSERT INTO builds (job_id, package, version, abi, builder_id, status, duration, log_gz, "
    "files, not_uploaded) VALUES ('j1', 'foo', '1.0', 'cp311', 2, 'success', 1, '', "
    "'[\"foo-1.0-cp311-cp311-linux_aarch64.whl\"]', '[]')",
    "INSERT INTO files (filename, package, version, abi, job_id, size, sha256, requires_dist, "
    "apt_depends, unresolved) VALUES ('foo-1.0-cp311-cp311-linux_aarch64.whl', 'foo', '1.0', "
    "'cp311', 'j1', 1, 'x', '[]', '[]', '[]')",
]


def test_rows_get_the_platform_of_their_newest_builder_and_jobs_are_queued_again(scratch_db):
    url, engine = scratch_db
    command.upgrade(alembic_config(url), "0007")
    with engine.begin() as conn:
        for statement in OLD_ROWS:
            conn.execute(text(statement))
    command.upgrade(alembic_config(url), "0008")
    with engine.connect() as conn:
        def rows(sql):
            return sorted(tuple(r) for r in conn.execute(text(sql)))
        # cp311's newest builder was aarch64; cp313 never had one: armv7l, piwheels' own
        assert rows("SELECT abi, distro FROM build_abis") == [
            ("cp311-linux_aarch64", "bookworm"), ("cp313-linux_armv7l", "trixie")]
        # what was queued or building on the old queues goes back to pending, to be
        # published on the new ones
        assert rows("SELECT version, abi, state, builder_id FROM build_targets") == [
            ("1.0", "cp311-linux_aarch64", "built", None),
            ("2.0", "cp311-linux_aarch64", "pending", None),
            ("2.0", "cp313-linux_armv7l", "pending", None)]
        assert rows("SELECT abi FROM builds") == rows("SELECT abi FROM files") == [
            ("cp311-linux_aarch64",)]
        assert rows("SELECT label, abi FROM builders") == [
            ("pi-new", "cp311-linux_aarch64"), ("pi-old", "cp311-linux_aarch64")]
    command.downgrade(alembic_config(url), "0007")
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT abi FROM build_abis")).scalars()) == [
            "cp311", "cp313"]
