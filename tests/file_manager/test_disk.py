"""The wheels on disk on their own: no broker, no database."""

import hashlib
import os
import random

import pytest

from piw_services.file_manager.disk import UploadRefused, WheelDisk, armv6l_name
from tests.file_manager.conftest import big_wheel, chunks, metadata_of, tree, wheel, zip_bytes

ARMV7 = "foo-1.0-cp311-cp311-linux_armv7l.whl"
ARMV6 = "foo-1.0-cp311-cp311-linux_armv6l.whl"


@pytest.fixture
def disk(tmp_path):
    return WheelDisk(tmp_path / "www")


def upload(disk, upload_id, data, size=4096, order=None):
    pieces = chunks(data, size)
    for off, piece in (order(pieces) if order else pieces):
        assert disk.write_chunk(upload_id, off, piece, hashlib.sha256(piece).hexdigest())


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("order", [None, lambda p: p[::-1],
                                   lambda p: random.Random(7).sample(p, len(p))])
def test_chunks_in_any_order_assemble_the_file(disk, tmp_path, order):
    data = big_wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl", 50_000).read_bytes()
    upload(disk, "u1", data, order=order)
    assert disk.verify("u1", len(data), sha(data)).ok
    installed = disk.install("u1", "foo", "foo-1.0-py3-none-any.whl")
    assert installed.path == "simple/foo/foo-1.0-py3-none-any.whl"
    assert (disk.root / installed.path).read_bytes() == data
    assert tree(disk.uploads) == []


def test_a_chunk_written_twice_is_harmless(disk, tmp_path):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    upload(disk, "u1", data)
    upload(disk, "u1", data, order=lambda p: p[1:2])
    assert disk.verify("u1", len(data), sha(data)).ok


def test_incomplete_upload_is_not_final(disk, tmp_path):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    assert not disk.verify("u1", len(data), sha(data)).final  # nothing yet: may be in flight
    upload(disk, "u1", data, size=100, order=lambda p: p[1:])  # a hole at offset 0
    verdict = disk.verify("u1", len(data), sha(data))
    assert not verdict.ok and not verdict.final and "hash to" in verdict.problem
    upload(disk, "u1", data, size=100, order=lambda p: p[:1])
    assert disk.verify("u1", len(data), sha(data)).ok


def test_corrupt_chunk_is_not_written_and_fails_the_upload(disk, tmp_path):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    pieces = chunks(data, 100)
    for off, piece in pieces:
        bad = b"X" + piece[1:] if off == 200 else piece
        disk.write_chunk("u1", off, bad, sha(piece))
    assert disk.part_path("u1").read_bytes()[200:300] == b"\0" * 100  # never written
    verdict = disk.verify("u1", len(data), sha(data))
    assert not verdict.ok and verdict.final
    assert "offset 200" in verdict.problem and "corrupt" in verdict.problem
    disk.discard("u1")
    assert tree(disk.uploads) == []


def test_wrong_final_hash_or_size(disk, tmp_path):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    upload(disk, "u1", data)
    wrong = disk.verify("u1", len(data), "0" * 64)
    assert not wrong.ok and not wrong.final
    longer = disk.verify("u1", len(data) - 1, sha(data))
    assert not longer.ok and longer.final and "more than" in longer.problem


HOSTILE = ["../x.whl", "a/b.whl", "foo-1.0-py3-none-any.whl\0", "not-a-wheel.txt",
           "/tmp/foo-1.0-py3-none-any.whl", "..", "", "foo\\..\\bar-1.0-py3-none-any.whl",
           "../../foo-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("filename", HOSTILE)
def test_hostile_filenames_are_refused(disk, tmp_path, filename):
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    upload(disk, "u1", data)
    before = tree(tmp_path)
    with pytest.raises(UploadRefused):
        disk.install("u1", "foo", filename)
    with pytest.raises(UploadRefused):
        disk.wheel_path("foo", filename)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("package", ["../evil", "", "/etc", "a/../../b"])
def test_hostile_package_names_are_refused(disk, package):
    with pytest.raises(UploadRefused):
        disk.wheel_path(package, "foo-1.0-py3-none-any.whl")


@pytest.mark.parametrize("upload_id", ["../x", "a/b", "", "x" * 101, "a\0b"])
def test_hostile_upload_ids_are_refused(disk, upload_id):
    with pytest.raises(UploadRefused):
        disk.write_chunk(upload_id, 0, b"x", sha(b"x"))


def test_a_package_directory_that_leads_outside_is_refused(disk, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (disk.simple / "foo").symlink_to(outside)
    data = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl").read_bytes()
    upload(disk, "u1", data)
    with pytest.raises(UploadRefused):
        disk.install("u1", "foo", "foo-1.0-py3-none-any.whl")
    with pytest.raises(UploadRefused):
        disk.delete("foo", ["foo-1.0-py3-none-any.whl"])
    assert list(outside.iterdir()) == []


def test_metadata_is_the_wheels_metadata(disk, tmp_path):
    src = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl")
    upload(disk, "u1", src.read_bytes())
    installed = disk.install("u1", "Foo", src.name)
    meta = disk.simple / "foo" / (src.name + ".metadata")
    assert meta.read_bytes() == metadata_of(src)
    assert installed.metadata_sha256 == sha(metadata_of(src))
    assert oct(meta.stat().st_mode & 0o777) == "0o644"


def test_armv7l_wheel_gets_relative_armv6l_links(disk, tmp_path):
    src = wheel(tmp_path / "src", ARMV7)
    upload(disk, "u1", src.read_bytes())
    installed = disk.install("u1", "foo", ARMV7, link=armv6l_name(ARMV7))
    assert installed.link == ARMV6
    d = disk.simple / "foo"
    for name, target in ((ARMV6, ARMV7), (ARMV6 + ".metadata", ARMV7 + ".metadata")):
        assert (d / name).is_symlink()
        assert os.readlink(d / name) == target  # relative: the tree can move
        assert (d / name).resolve() == d / target
    assert (d / ARMV6).read_bytes() == src.read_bytes()
    assert (d / (ARMV6 + ".metadata")).read_bytes() == metadata_of(src)
    assert tree(disk.uploads) == []  # no temp left behind


def test_armv6l_name():
    assert armv6l_name(ARMV7) == ARMV6
    assert armv6l_name("foo-1.0-cp311-cp311-linux_aarch64.whl") is None
    assert armv6l_name(ARMV6) is None
    assert armv6l_name("foo-1.0-py3-none-any.whl") is None
    assert (armv6l_name("foo-1.0-cp311-cp311-manylinux_2_17_armv7l.linux_armv7l.whl")
            == "foo-1.0-cp311-cp311-manylinux_2_17_armv7l.linux_armv6l.whl")
    assert armv6l_name("foo-1.0-cp311-cp311-linux_armv6l.linux_armv7l.whl") is None


def test_repeated_install_is_idempotent(disk, tmp_path):
    src = wheel(tmp_path / "src", ARMV7)
    for upload_id in ("u1", "u2"):
        upload(disk, upload_id, src.read_bytes())
        disk.install(upload_id, "foo", ARMV7, link=ARMV6)
        first = tree(disk.root)
    assert tree(disk.root) == first
    # a crash after the wheel's rename: repair re-makes metadata and links
    (disk.simple / "foo" / (ARMV7 + ".metadata")).unlink()
    (disk.simple / "foo" / ARMV6).unlink()
    assert disk.repair("foo", ARMV7, link=ARMV6).link == ARMV6
    assert tree(disk.root) == first
    assert disk.repair("foo", "foo-2.0-py3-none-any.whl") is None


def test_not_a_wheel_is_refused_and_nothing_published(disk, tmp_path):
    for upload_id, data in (("u1", b"not a zip at all" * 10),
                            ("u2", zip_bytes({"foo.py": b"x"})),
                            ("u3", zip_bytes({"a.dist-info/METADATA": b"x",
                                              "b.dist-info/METADATA": b"y"}))):
        upload(disk, upload_id, data)
        with pytest.raises(UploadRefused) as err:
            disk.install(upload_id, "foo", "foo-1.0-py3-none-any.whl")
        assert not err.value.retry
    assert tree(disk.simple) == []


def test_deletion_removes_files_links_and_metadata(disk, tmp_path):
    for filename in (ARMV7, "foo-1.0-py3-none-any.whl"):
        upload(disk, filename, wheel(tmp_path / "src", filename).read_bytes())
        disk.install(filename, "foo", filename, link=armv6l_name(filename))
    removed = disk.delete("foo", [ARMV7])  # the link goes with its target
    assert sorted(removed) == sorted(f"simple/foo/{n}" for n in (
        ARMV7, ARMV7 + ".metadata", ARMV6, ARMV6 + ".metadata"))
    assert tree(disk.simple) == ["foo", "foo/foo-1.0-py3-none-any.whl",
                                  "foo/foo-1.0-py3-none-any.whl.metadata"]
    disk.delete("foo", ["foo-1.0-py3-none-any.whl"])
    assert tree(disk.simple) == []  # the empty package directory too
    assert disk.delete("foo", [ARMV7, "foo-1.0-py3-none-any.whl"]) == []  # twice is fine


def test_deletion_keeps_a_real_armv6l_wheel(disk, tmp_path):
    for filename in (ARMV7, ARMV6):
        upload(disk, filename, wheel(tmp_path / "src", filename).read_bytes())
        disk.install(filename, "foo", filename)
    disk.delete("foo", [ARMV7])
    assert tree(disk.simple) == ["foo", f"foo/{ARMV6}", f"foo/{ARMV6}.metadata"]


def test_sweep_removes_only_old_uploads(disk, tmp_path):
    disk.write_chunk("old", 0, b"x", sha(b"x"))
    disk.mark_corrupt("old", 0)
    disk.write_chunk("new", 0, b"x", sha(b"x"))
    for path in (disk.part_path("old"), disk.corrupt_path("old")):
        os.utime(path, (1, 1))
    assert disk.uploads_in_progress() == (2, 2)
    assert disk.sweep(3600) == 2
    assert tree(disk.uploads) == ["new.part"]
