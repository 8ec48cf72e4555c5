"""inspect_wheel end to end, on wheels pip really built and on shared objects gcc really linked."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from builders.inspection import inspect_wheel

from .conftest import simple_wheel

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs a Debian host")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def test_c_wheel_identity_hashes_and_metadata(built_wheels):
    wheel = built_wheels["c"]
    info = inspect_wheel(wheel)
    data = wheel.read_bytes()
    assert info.filename == wheel.name
    assert (info.name, info.version, info.build_tag) == ("zlibby", "0.1", None)
    assert info.size == len(data) == wheel.stat().st_size
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.requires_python == ">=3.8"
    assert info.requires_dist == []
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read("zlibby-0.1.dist-info/METADATA")
    assert info.metadata_sha256 == hashlib.sha256(metadata).hexdigest()
    (tag,) = info.tags
    assert wheel.name == f"zlibby-0.1-{tag}.whl"
    assert json.loads(json.dumps(info.as_dict())) == info.as_dict()


def test_c_wheel_links_libz(built_wheels):
    info = inspect_wheel(built_wheels["c"])
    (lib,) = info.libraries
    assert re.fullmatch(r"zlibby\..*\.so", lib.path)
    assert lib.needed["libz.so.1"] is not None
    assert lib.needed["libz.so.1"].startswith("/")
    assert info.unresolved == []


@needs_dpkg
def test_c_wheel_apt_depends(built_wheels):
    info = inspect_wheel(built_wheels["c"])
    assert "zlib1g" in info.apt_depends
    assert "libc6" in info.apt_depends
    assert info.apt_depends == sorted(info.apt_depends)
    trimmed = inspect_wheel(built_wheels["c"], preinstalled={"libc6"})
    assert "zlib1g" in trimmed.apt_depends
    assert "libc6" not in trimmed.apt_depends
    assert inspect_wheel(built_wheels["c"], preinstalled=["libc6:amd64", "zlib1g"]).apt_depends == [
        p for p in info.apt_depends if p not in ("libc6", "zlib1g")
    ]


def test_pure_wheel_needs_nothing(built_wheels):
    wheel = built_wheels["pure"]
    info = inspect_wheel(wheel, preinstalled={"libc6"})
    assert (info.name, info.version) == ("puremod", "2.0")
    assert info.tags == ["py3-none-any"]
    assert info.requires_python is None
    assert info.libraries == [] and info.apt_depends == [] and info.unresolved == []
    assert info.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_elf_files_are_found_by_magic_not_by_suffix(built_wheels, tmp_path):
    """Move the extension to a name with no .so suffix, and add a fake .so that is not ELF."""
    with zipfile.ZipFile(built_wheels["c"]) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    (so_name,) = [n for n in members if n.endswith(".so")]
    members["zlibby/_native"] = members.pop(so_name)
    members["zlibby/decoy.so"] = b"# not a shared object\n"
    rebuilt = tmp_path / built_wheels["c"].name
    with zipfile.ZipFile(rebuilt, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    info = inspect_wheel(rebuilt)
    assert [lib.path for lib in info.libraries] == ["zlibby/_native"]
    assert "libz.so.1" in info.libraries[0].needed


def _gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def linked_objects(tmp_path_factory) -> dict[str, bytes]:
    """libhelper.so (which needs libc), and ext.so which needs it through an $ORIGIN rpath.

    That is how auditwheel-repaired wheels carry their own copies of libraries.
    """
    d = tmp_path_factory.mktemp("gcc")
    (d / "helper.c").write_text('#include <stdio.h>\nint helper(void) { return puts("hi"); }\n')
    (d / "ext.c").write_text("int helper(void);\nint ext(void) { return helper(); }\n")
    _gcc(
        "-shared", "-fPIC", "-Wl,-soname,libhelper.so.1", "-o", d / "libhelper.so.1", d / "helper.c"
    )
    _gcc(
        "-shared", "-fPIC", "-o", d / "ext.so", d / "ext.c",
        f"-L{d}", "-l:libhelper.so.1", "-Wl,-rpath,$ORIGIN/../demo.libs",
    )  # fmt: skip
    return {name: (d / name).read_bytes() for name in ("ext.so", "libhelper.so.1")}


@needs_gcc
def test_a_library_bundled_in_the_wheel_is_neither_unresolved_nor_an_apt_package(
    linked_objects, tmp_path
):
    wheel = simple_wheel(
        tmp_path,
        extra={
            "demo/ext.so": linked_objects["ext.so"],
            "demo.libs/libhelper.so.1": linked_objects["libhelper.so.1"],
        },
    )
    info = inspect_wheel(wheel)
    ext = next(lib for lib in info.libraries if lib.path == "demo/ext.so")
    assert ext.needed["libhelper.so.1"] == "demo.libs/libhelper.so.1"
    assert info.unresolved == []
    assert [lib.path for lib in info.libraries] == ["demo.libs/libhelper.so.1", "demo/ext.so"]
    if shutil.which("dpkg"):
        assert info.apt_depends == ["libc6"]


@needs_gcc
def test_a_missing_library_is_unresolved(linked_objects, tmp_path):
    wheel = simple_wheel(tmp_path, extra={"demo/ext.so": linked_objects["ext.so"]})
    info = inspect_wheel(wheel)
    (lib,) = info.libraries
    assert lib.needed["libhelper.so.1"] is None
    assert info.unresolved == ["libhelper.so.1"]


def test_the_temporary_directory_is_removed(built_wheels, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    inspect_wheel(built_wheels["c"])
    assert list(tmp_path.iterdir()) == []
    assert not any(Path(tmp_path).glob("piw-inspect-*"))
