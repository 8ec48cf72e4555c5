"""The file_manager service in a nameko container on a real RabbitMQ and PostgreSQL, with a
fake builder publishing chunks and commits the way a Pi does."""

import time
import uuid

import pytest
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import text

from piw_services import events as ev
from piw_services import outbox
from piw_services.db.models import Package, Version
from piw_services.file_manager.service import FileManagerService
from tests.conftest import wait_for
from tests.file_manager.conftest import (
    add_target,
    add_upstream_file,
    big_wheel,
    info_of,
    metadata_of,
    tree,
    wheel,
)

PURE = "foo-1.0-py3-none-any.whl"
ARMV7 = "foo-1.0-cp311-cp311-linux_armv7l.whl"
ARMV6 = "foo-1.0-cp311-cp311-linux_armv6l.whl"
CHANGES = []


class Listener:
    """Records the files_changed events, as the index will receive them."""

    name = "test_files_listener"

    @event_handler(ev.FILES_CHANGED_SOURCE, ev.FILES_CHANGED)
    def on_files_changed(self, payload):
        CHANGES.append(ev.check_service_event(ev.FILES_CHANGED, payload))


@pytest.fixture
def www(tmp_path):
    return tmp_path / "www"


@pytest.fixture
def service(db, db_url, rabbit_config, runner_factory, www):
    CHANGES.clear()
    config = {"AMQP_URI": rabbit_config["AMQP_URI"], "DB_URL": db_url, "WWW": str(www),
              "serializer": "json", "max_workers": 10, "FILE_COMMIT_WAIT": 0.5}
    runner = runner_factory(config, FileManagerService, Listener)
    runner.start()
    return runner


def rows(db):
    with db() as s:
        return {r.filename: r for r in s.execute(text("SELECT * FROM files")).all()}


def test_upload_publishes_file_row_metadata_and_event(service, builder, db, www, tmp_path):
    add_target(db)
    src = big_wheel(tmp_path / "src", PURE, 300_000)
    reply = builder.upload(src, order=lambda p: p[::-1])
    assert reply == {"ok": True, "filename": PURE, "path": f"simple/foo/{PURE}", "links": []}
    assert (www / "simple/foo" / PURE).read_bytes() == src.read_bytes()
    assert (www / "simple/foo" / (PURE + ".metadata")).read_bytes() == metadata_of(src)
    row = rows(db)[PURE]
    info = info_of(src)
    assert (row.package, row.version, row.abi, row.job_id, row.size, row.sha256,
            row.metadata_sha256, row.apt_depends, row.link_of) == (
        "foo", "1.0", "cp311-linux_armv7l", "j1", info["size"], info["sha256"],
        info["metadata_sha256"], ["libfoo1"], None)
    wait_for(lambda: CHANGES, 10, what="files_changed")
    assert CHANGES == [{"package": "foo", "version": "1.0", "added": [PURE], "removed": []}]
    assert tree(www / ".uploads") == []


def test_commit_waits_for_chunks_still_on_their_way(service, builder, db, www, tmp_path):
    """Chunks handled by other workers (or instances) may land after the commit arrives."""
    add_target(db)
    src = big_wheel(tmp_path / "src", PURE, 200_000)
    data = src.read_bytes()
    builder.send_chunks("u1", data, order=lambda p: p[1:])
    corr = builder.publish_commit("u1", info_of(src))
    time.sleep(0.2)
    builder.send_chunks("u1", data, order=lambda p: p[:1])  # the last one, late
    assert builder.reply(corr)["ok"]
    assert (www / "simple/foo" / PURE).read_bytes() == data


def test_armv7l_upload_is_also_served_as_armv6l(service, builder, db, www, tmp_path):
    add_target(db)
    src = wheel(tmp_path / "src", ARMV7)
    reply = builder.upload(src)
    assert reply["ok"] and reply["links"] == [ARMV6]
    assert (www / "simple/foo" / ARMV6).resolve() == www.resolve() / "simple/foo" / ARMV7
    assert (www / "simple/foo" / (ARMV6 + ".metadata")).read_bytes() == metadata_of(src)
    found = rows(db)
    assert found[ARMV6].link_of == ARMV7 and found[ARMV6].sha256 == found[ARMV7].sha256
    wait_for(lambda: CHANGES, 10, what="files_changed")
    assert CHANGES[0]["added"] == [ARMV7, ARMV6]


def test_repeated_commit_is_harmless(service, builder, db, www, tmp_path):
    add_target(db)
    src = wheel(tmp_path / "src", ARMV7)
    assert builder.upload(src, upload_id="u1")["ok"]
    before = tree(www)
    again = builder.commit("u1", info_of(src))  # a redelivered commit: its part is gone
    assert again["ok"] and again["already"]
    assert builder.upload(src, upload_id="u2")["already"]  # the builder uploaded it twice
    assert tree(www) == before and sorted(rows(db)) == [ARMV6, ARMV7]
    (www / "simple/foo" / ARMV7).unlink()  # a row whose file was lost: the upload replaces it
    assert builder.upload(src, upload_id="u3")["links"] == [ARMV6]
    assert tree(www) == before


def test_a_wheel_for_another_platform_than_the_jobs_is_refused(service, builder, db, www,
                                                               tmp_path):
    """An aarch64 wheel sent for an armv7l job would be served to armv7l Pis, which cannot
    load it: refused, named, nothing published (a pure wheel fits every platform)."""
    add_target(db)
    wrong = "foo-1.0-cp311-cp311-linux_aarch64.whl"
    reply = builder.upload(wheel(tmp_path / "src", wrong))
    assert reply["ok"] is False and reply["retry"] is False
    assert reply["error"] == (f"refused: {wrong} is built for linux_aarch64, but its job is "
                              f"for linux_armv7l (target cp311-linux_armv7l)")
    assert rows(db) == {} and not (www / "simple/foo").exists()
    assert tree(www / ".uploads") == []
    assert builder.upload(wheel(tmp_path / "ok", ARMV7))["ok"]


def test_other_bytes_under_a_served_name_keep_the_served_file(service, builder, db, www,
                                                               tmp_path):
    add_target(db)
    add_target(db, abi="cp312-linux_aarch64", job_id="j2", builder_id=2)
    first = wheel(tmp_path / "a", PURE)
    second = wheel(tmp_path / "b", PURE, version="1.0")
    with __import__("zipfile").ZipFile(second, "a") as zf:
        zf.writestr("extra.txt", b"built elsewhere")
    assert builder.upload(first)["ok"]
    reply = builder.upload(second, job_id="j2", builder_id=2)
    assert reply["ok"] and reply["kept_existing"] and reply["sha256"] == info_of(first)["sha256"]
    assert (www / "simple/foo" / PURE).read_bytes() == first.read_bytes()
    assert tree(www / ".uploads") == []


@pytest.mark.parametrize("job_id, builder_id, state", [
    ("j1", 2, "building"), ("nope", 1, "building"), ("j1", 1, "queued")])
def test_commit_for_a_job_not_being_built_by_that_builder_is_refused(
        service, builder, db, www, tmp_path, job_id, builder_id, state):
    add_target(db, state=state)
    reply = builder.upload(wheel(tmp_path / "src", PURE), upload_id="u1", job_id=job_id,
                           builder_id=builder_id)
    assert reply == {"ok": False, "retry": False, "job_lost": True,
                     "error": f"job {job_id} is not being built by builder {builder_id}"}
    assert tree(www / "simple") == [] and tree(www / ".uploads") == [] and rows(db) == {}


def test_wheel_of_another_package_or_version_is_refused(service, builder, db, www, tmp_path):
    add_target(db)
    for filename, name, version in (("bar-1.0-py3-none-any.whl", "bar", "1.0"),
                                    ("foo-2.0-py3-none-any.whl", "foo", "2.0")):
        reply = builder.upload(wheel(tmp_path / name / version, filename, name, version))
        assert not reply["ok"] and not reply["retry"]
        assert "is not a wheel of job j1's foo 1.0" in reply["error"]
    assert tree(www / "simple") == []


def test_version_spelling_and_name_case_may_differ(service, builder, db, www, tmp_path):
    add_target(db, package="Foo.Bar", version="1.0.0")
    reply = builder.upload(wheel(tmp_path / "src", "foo_bar-1.0-py3-none-any.whl", "foo_bar"))
    assert reply["ok"] and reply["path"] == "simple/foo-bar/foo_bar-1.0-py3-none-any.whl"


def test_corrupt_chunk_is_refused_with_retry(service, builder, db, www, tmp_path):
    add_target(db)
    src = big_wheel(tmp_path / "src", PURE, 200_000)
    reply = builder.upload(src, upload_id="u1", corrupt_at=65536)
    assert not reply["ok"] and reply["retry"]
    assert "offset 65536" in reply["error"] and "corrupt" in reply["error"]
    assert tree(www / "simple") == [] and tree(www / ".uploads") == [] and rows(db) == {}
    # the builder uploads again (same id even) and succeeds
    assert builder.upload(src, upload_id="u1")["ok"]


def test_wrong_final_hash_or_missing_data_is_refused_with_retry(service, builder, db, www,
                                                                tmp_path):
    add_target(db)
    src = wheel(tmp_path / "src", PURE)
    reply = builder.upload(src, info=info_of(src, sha256="0" * 64))
    assert not reply["ok"] and reply["retry"] and "not the announced" in reply["error"]
    reply = builder.commit("never-sent", info_of(src))
    assert not reply["ok"] and reply["retry"] and "no chunks received" in reply["error"]
    assert tree(www / "simple") == [] and tree(www / ".uploads") == [] and rows(db) == {}


def test_filename_upstream_serves_is_refused(service, builder, db, www, tmp_path):
    add_target(db)
    add_upstream_file(db, PURE)
    reply = builder.upload(wheel(tmp_path / "src", PURE))
    assert not reply["ok"] and not reply["retry"] and "upstream already serves" in reply["error"]
    assert tree(www / "simple") == []


def test_armv7l_wheel_of_an_armv7_only_image_gets_no_armv6l_name(service, builder, db, www,
                                                                 tmp_path):
    """A Debian armhf userland builds ARMv7 code: serving it to a Pi Zero as armv6l would
    crash there with "Illegal instruction" (BUILD_ABIS without ``:armv6``)."""
    add_target(db, armv6=False)
    src = wheel(tmp_path / "src", ARMV7)
    reply = builder.upload(src)
    assert reply["ok"] and reply["links"] == []
    assert tree(www / "simple/foo") == [ARMV7, ARMV7 + ".metadata"]
    assert sorted(rows(db)) == [ARMV7]
    # a repeated commit (redelivery) does not make the link either
    assert builder.upload(src, upload_id="u2")["ok"]
    assert tree(www / "simple/foo") == [ARMV7, ARMV7 + ".metadata"]


def test_armv6l_name_upstream_serves_gets_no_link(service, builder, db, www, tmp_path):
    add_target(db)
    add_upstream_file(db, ARMV6)
    assert builder.upload(wheel(tmp_path / "src", ARMV7))["links"] == []
    assert sorted(rows(db)) == [ARMV7]


@pytest.mark.parametrize("filename", ["../foo-1.0-py3-none-any.whl", "a/b.whl",
                                      "not-a-wheel.txt", "foo\0-1.0-py3-none-any.whl"])
def test_hostile_filename_in_a_commit_is_refused(service, builder, db, www, tmp_path,
                                                 filename):
    add_target(db)
    src = wheel(tmp_path / "src", PURE)
    reply = builder.upload(src, info=info_of(src, filename=filename))
    assert not reply["ok"] and not reply["retry"]
    assert tree(tmp_path / "www" / "simple") == []


def test_commit_of_a_version_removed_upstream_is_refused(service, builder, db, www, tmp_path):
    add_target(db)
    with db() as s, s.begin():
        s.add(Package(name="foo", display_name="foo", created_k=5, deleted_k=0))
        s.add(Version(package="foo", version="1.0", created_k=5, deleted_k=9))
    reply = builder.upload(wheel(tmp_path / "src", PURE))
    assert not reply["ok"] and reply["job_lost"] and "removed upstream" in reply["error"]
    assert tree(www / "simple") == []


def test_removal_events_delete_files_links_and_rows(service, builder, db, www, tmp_path,
                                                    rabbit_config):
    add_target(db)
    add_target(db, version="2.0", job_id="j2")
    assert builder.upload(wheel(tmp_path / "a", ARMV7))["ok"]
    assert builder.upload(wheel(tmp_path / "b", "foo-2.0-py3-none-any.whl", version="2.0"),
                          job_id="j2")["ok"]
    wait_for(lambda: len(CHANGES) == 2, 10, what="two files_changed")
    events = [{"type": "version_removed", "package": "foo", "version": "1.0", "serial": 1,
               "timestamp": 1}]
    with db() as s, s.begin():
        [seq] = outbox.write(s, events)
    # the reorderer's relay nudges consumers with the batch (the timer would catch up anyway)
    event_dispatcher({"AMQP_URI": rabbit_config["AMQP_URI"]})(
        "reorderer", outbox.EVENT_TYPE, {"seq": seq, "events": events})
    wait_for(lambda: sorted(rows(db)) == ["foo-2.0-py3-none-any.whl"], 15,
             what="version 1.0 removed by the catch-up timer")
    assert tree(www / "simple") == ["foo", "foo/foo-2.0-py3-none-any.whl",
                                    "foo/foo-2.0-py3-none-any.whl.metadata"]
    wait_for(lambda: len(CHANGES) == 3, 10, what="files_changed of the removal")
    assert CHANGES[2] == {"package": "foo", "version": "1.0", "added": [],
                          "removed": [ARMV6, ARMV7]}
    with db() as s, s.begin():
        outbox.write(s, [{"type": "package_removed", "package": "foo", "life": 0,
                          "serial": 2, "timestamp": 2}])
    wait_for(lambda: rows(db) == {}, 15, what="package removed")
    assert tree(www / "simple") == []


def test_upstream_serving_our_filename_removes_ours(service, builder, db, www, tmp_path):
    add_target(db)
    assert builder.upload(wheel(tmp_path / "src", PURE))["ok"]
    with db() as s, s.begin():
        outbox.write(s, [{"type": "file_added", "package": "foo", "version": "1.0",
                          "filename": PURE, "pyver": "py3", "serial": 1, "timestamp": 1}])
    wait_for(lambda: rows(db) == {}, 15, what="our copy removed")
    assert tree(www / "simple") == []


def test_delete_files_and_status_rpcs(service, builder, db, www, tmp_path, rabbit_config):
    add_target(db)
    add_target(db, version="2.0", job_id="j2")
    assert builder.upload(wheel(tmp_path / "a", ARMV7))["ok"]
    src = wheel(tmp_path / "b", "foo-2.0-py3-none-any.whl", version="2.0")
    assert builder.upload(src, job_id="j2")["ok"]
    builder.send_chunks(uuid.uuid4().hex, b"x" * 10)  # an upload in progress
    with ClusterRpcProxy({"AMQP_URI": rabbit_config["AMQP_URI"]}, timeout=10) as rpc:
        status = wait_for(lambda: (s := rpc.file_manager.status())["uploads"] and s, 10)
        assert status == {"files": 2, "links": 1, "uploads": 1, "upload_bytes": 10,
                          "bytes": info_of(src)["size"] + info_of(tmp_path / "a" / ARMV7)["size"]}
        assert rpc.file_manager.delete_files("FOO", "1.0") == [ARMV6, ARMV7]
        assert rpc.file_manager.delete_files("foo", "1.0") == []
        assert rpc.file_manager.delete_files("foo") == ["foo-2.0-py3-none-any.whl"]
    assert rows(db) == {} and tree(www / "simple") == []
