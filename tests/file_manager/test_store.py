"""The file store on its own: no broker, no database."""

import hashlib
import os
import random

import pytest

from piw_services.file_manager.store import FileStore, StoreError, armv6l_name
from tests.file_manager.conftest import big_wheel, chunks, metadata_of, tree, wheel, zip_bytes

ARMV7 = "foo-1.0-cp311-cp311-linux_armv7l.whl"
ARMV6 = "foo-1.0-cp311-cp311-linux_armv6l.whl"


@pytest.fixture
def store(tmp_path):
    return FileStore(tmp_path / "www")


def upload(store, upload_id, data, size=4096, order=None):
    pieces = chunks(data, size)
    for off, piece in (order(pieces) if order else pieces):
        assert store.write_chunk(upload_id, off, piece, hashlib.sha256(piece).hexdigest())


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("order", [None, lambda p: p[::-1],
                                   lambda p: random.Random(7).sample(p, len(p))])
def test_chunks_in_any_order_assemble_the_file(store, tmp_path, order):
    data = big_wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl", 50_000).read_bytes()
    upload(store, "u1", data, order=order)
    assert store.verify("u1", len(data), sha(data)).ok
    installed = store.install("u1", "foo", "foo-1.0-py3-none-any.whl")
    assert installed.path == "simple/foo/foo-1.0-py3-none-any.whl"
    assert (store.root / installed.path).read_bytes() == data
    assert tree(store.uploads) == []


def test_a_chunk_written_twice_is_harmless(store, tmp_path):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    upload(store, "u1", data)
    upload(store, "u1", data, order=lambda p: p[1:2])
    assert store.verify("u1", len(data), sha(data)).ok


def test_incomplete_upload_is_not_final(store, tmp_path):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    assert not store.verify("u1", len(data), sha(data)).final  # nothing yet: may be in flight
    upload(store, "u1", data, size=100, order=lambda p: p[1:])  # a hole at offset 0
    verdict = store.verify("u1", len(data), sha(data))
    assert not verdict.ok and not verdict.final and "hash to" in verdict.problem
    upload(store, "u1", data, size=100, order=lambda p: p[:1])
    assert store.verify("u1", len(data), sha(data)).ok


def test_corrupt_chunk_is_not_written_and_fails_the_upload(store, tmp_path):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    pieces = chunks(data, 100)
    for off, piece in pieces:
        bad = b"X" + piece[1:] if off == 200 else piece
        store.write_chunk("u1", off, bad, sha(piece))
    assert store.part_path("u1").read_bytes()[200:300] == b"\0" * 100  # never written
    verdict = store.verify("u1", len(data), sha(data))
    assert not verdict.ok and verdict.final
    assert "offset 200" in verdict.problem and "corrupt" in verdict.problem
    store.discard("u1")
    assert tree(store.uploads) == []


def test_wrong_final_hash_or_size(store, tmp_path):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    upload(store, "u1", data)
    wrong = store.verify("u1", len(data), "0" * 64)
    assert not wrong.ok and not wrong.final
    longer = store.verify("u1", len(data) - 1, sha(data))
    assert not longer.ok and longer.final and "more than" in longer.problem


HOSTILE = ["../x.whl", "a/b.whl", "foo-1.0-py3-none-any.whl\0", "not-a-wheel.txt",
           "/tmp/foo-1.0-py3-none-any.whl", "..", "", "foo\\..\\bar-1.0-py3-none-any.whl",
           "../../foo-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("filename", HOSTILE)
def test_hostile_filenames_are_refused(store, tmp_path, filename):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    upload(store, "u1", data)
    before = tree(tmp_path)
    with pytest.raises(StoreError):
        store.install("u1", "foo", filename)
    with pytest.raises(StoreError):
        store.wheel_path("foo", filename)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("package", ["../evil", "", "/etc", "a/../../b"])
def test_hostile_package_names_are_refused(store, package):
    with pytest.raises(StoreError):
        store.wheel_path(package, "foo-1.0-py3-none-any.whl")


@pytest.mark.parametrize("upload_id", ["../x", "a/b", "", "x" * 101, "a\0b"])
def test_hostile_upload_ids_are_refused(store, upload_id):
    with pytest.raises(StoreError):
        store.write_chunk(upload_id, 0, b"x", sha(b"x"))


def test_a_package_directory_that_leads_outside_is_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.simple / "foo").symlink_to(outside)
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    upload(store, "u1", data)
    with pytest.raises(StoreError):
        store.install("u1", "foo", "foo-1.0-py3-none-any.whl")
    with pytest.raises(StoreError):
        store.delete("foo", ["foo-1.0-py3-none-any.whl"])
    assert list(outside.iterdir()) == []


def test_metadata_is_the_wheels_metadata(store, tmp_path):
    src = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl")
    upload(store, "u1", src.read_bytes())
    installed = store.install("u1", "Foo", src.name)
    meta = store.simple / "foo" / (src.name + ".metadata")
    assert meta.read_bytes() == metadata_of(src)
    assert installed.metadata_sha256 == sha(metadata_of(src))
    assert oct(meta.stat().st_mode & 0o777) == "0o644"


def test_armv7l_wheel_gets_relative_armv6l_links(store, tmp_path):
    src = wheel(tmp_path / "src", ARMV7)
    upload(store, "u1", src.read_bytes())
    installed = store.install("u1", "foo", ARMV7, link=armv6l_name(ARMV7))
    assert installed.link == ARMV6
    d = store.simple / "foo"
    for name, target in ((ARMV6, ARMV7), (ARMV6 + ".metadata", ARMV7 + ".metadata")):
        assert (d / name).is_symlink()
        assert os.readlink(d / name) == target  # relative: the tree can move
        assert (d / name).resolve() == d / target
    assert (d / ARMV6).read_bytes() == src.read_bytes()
    assert (d / (ARMV6 + ".metadata")).read_bytes() == metadata_of(src)
    assert tree(store.uploads) == []  # no temp left behind


def test_armv6l_name():
    assert armv6l_name(ARMV7) == ARMV6
    assert armv6l_name("foo-1.0-cp311-cp311-linux_aarch64.whl") is None
    assert armv6l_name(ARMV6) is None
    assert armv6l_name("foo-1.0-py3-none-any.whl") is None
    assert (armv6l_name("foo-1.0-cp311-cp311-manylinux_2_17_armv7l.linux_armv7l.whl")
            == "foo-1.0-cp311-cp311-manylinux_2_17_armv7l.linux_armv6l.whl")
    assert armv6l_name("foo-1.0-cp311-cp311-linux_armv6l.linux_armv7l.whl") is None


def test_repeated_install_is_idempotent(store, tmp_path):
    src = wheel(tmp_path / "src", ARMV7)
    for upload_id in ("u1", "u2"):
        upload(store, upload_id, src.read_bytes())
        store.install(upload_id, "foo", ARMV7, link=ARMV6)
        first = tree(store.root)
    assert tree(store.root) == first
    # a crash after the wheel's rename: repair re-makes metadata and links
    (store.simple / "foo" / (ARMV7 + ".metadata")).unlink()
    (store.simple / "foo" / ARMV6).unlink()
    assert store.repair("foo", ARMV7, link=ARMV6).link == ARMV6
    assert tree(store.root) == first
    assert store.repair("foo", "foo-2.0-py3-none-any.whl") is None


def test_not_a_wheel_is_refused_and_nothing_published(store, tmp_path):
    for upload_id, data in (("u1", b"not a zip at all" * 10),
                            ("u2", zip_bytes({"foo.py": b"x"})),
                            ("u3", zip_bytes({"a.dist-info/METADATA": b"x",
                                              "b.dist-info/METADATA": b"y"}))):
        upload(store, upload_id, data)
        with pytest.raises(StoreError) as err:
            store.install(upload_id, "foo", "foo-1.0-py3-none-any.whl")
        assert not err.value.retry
    assert tree(store.simple) == []


def test_deletion_removes_files_links_and_metadata(store, tmp_path):
    for filename in (ARMV7, "foo-1.0-py3-none-any.whl"):
        upload(store, filename, wheel(tmp_path / "src", filename).read_bytes())
        store.install(filename, "foo", filename, link=armv6l_name(filename))
    removed = store.delete("foo", [ARMV7])  # the link goes with its target
    assert sorted(removed) == sorted(f"simple/foo/{n}" for n in (
        ARMV7, ARMV7 + ".metadata", ARMV6, ARMV6 + ".metadata"))
    assert tree(store.simple) == ["foo", "foo/foo-1.0-py3-none-any.whl",
                                  "foo/foo-1.0-py3-none-any.whl.metadata"]
    store.delete("foo", ["foo-1.0-py3-none-any.whl"])
    assert tree(store.simple) == []  # the empty package directory too
    assert store.delete("foo", [ARMV7, "foo-1.0-py3-none-any.whl"]) == []  # twice is fine


def test_deletion_keeps_a_real_armv6l_wheel(store, tmp_path):
    for filename in (ARMV7, ARMV6):
        upload(store, filename, wheel(tmp_path / "src", filename).read_bytes())
        store.install(filename, "foo", filename)
    store.delete("foo", [ARMV7])
    assert tree(store.simple) == ["foo", f"foo/{ARMV6}", f"foo/{ARMV6}.metadata"]


def test_sweep_removes_only_old_uploads(store, tmp_path):
    store.write_chunk("old", 0, b"x", sha(b"x"))
    store.mark_corrupt("old", 0)
    store.write_chunk("new", 0, b"x", sha(b"x"))
    for path in (store.part_path("old"), store.corrupt_path("old")):
        os.utime(path, (1, 1))
    assert store.uploads_in_progress() == (2, 2)
    assert store.sweep(3600) == 2
    assert tree(store.uploads) == ["new.part"]
