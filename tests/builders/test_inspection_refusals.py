"""inspect_wheel refuses hostile or malformed files with InspectionError, never anything else."""

from __future__ import annotations

import json
import zipfile

import pytest

from builders.inspection import InspectionError, inspect_wheel

from .conftest import simple_wheel, write_zip


def test_a_minimal_pure_wheel_is_accepted(tmp_path):
    wheel = simple_wheel(
        tmp_path,
        metadata=(
            "Metadata-Version: 2.1\nName: Demo\nVersion: 1.0.0\nRequires-Python: >=3.9\n"
            'Requires-Dist: requests>=2\nRequires-Dist: rich; extra == "cli"\n'
            "Summary: caf\u00e9\n\nRequires-Dist: in-the-body-so-ignored\n"
        ),
    )
    info = inspect_wheel(wheel)
    assert (info.name, info.version, info.build_tag) == ("demo", "1.0", None)
    assert info.requires_python == ">=3.9"
    assert info.requires_dist == ["requests>=2", 'rich; extra == "cli"']
    assert info.libraries == [] and info.apt_depends == [] and info.unresolved == []
    json.dumps(info.as_dict())


def test_build_tag_and_multiple_tags(tmp_path):
    wheel = simple_wheel(tmp_path, filename="demo-1.0-2b-py2.py3-none-any.whl")
    info = inspect_wheel(wheel)
    assert info.build_tag == "2b"
    assert info.tags == ["py2-none-any", "py3-none-any"]


def test_non_ascii_requirement_does_not_break_json(tmp_path):
    meta = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: caf\u00e9\n"
    info = inspect_wheel(simple_wheel(tmp_path, metadata=meta))
    assert info.requires_dist == ["caf\u00e9"]
    json.dumps(info.as_dict(), ensure_ascii=False).encode("utf-8")


def test_refuses_a_file_that_is_not_a_zip(tmp_path):
    bad = tmp_path / "demo-1.0-py3-none-any.whl"
    bad.write_bytes(b"\x7fELF this is not a zip at all" * 10)
    with pytest.raises(InspectionError, match="not a zip"):
        inspect_wheel(bad)


def test_refuses_an_empty_file(tmp_path):
    bad = tmp_path / "demo-1.0-py3-none-any.whl"
    bad.write_bytes(b"")
    with pytest.raises(InspectionError, match="not a zip"):
        inspect_wheel(bad)


def test_refuses_a_missing_file(tmp_path):
    with pytest.raises(InspectionError, match="cannot read"):
        inspect_wheel(tmp_path / "demo-1.0-py3-none-any.whl")


@pytest.mark.parametrize(
    "filename",
    [
        "demo-1.0.whl",
        "demo.whl",
        "demo-1.0-py3-none-any.zip",
        "demo-not!a!version-py3-none-any.whl",
    ],
)
def test_refuses_an_invalid_wheel_filename(tmp_path, filename):
    wheel = simple_wheel(tmp_path, filename=filename)
    with pytest.raises(InspectionError, match="not a valid wheel filename"):
        inspect_wheel(wheel)


def test_refuses_a_wheel_without_metadata(tmp_path):
    wheel = write_zip(
        tmp_path / "demo-1.0-py3-none-any.whl",
        {"demo.py": "", "demo-1.0.dist-info/WHEEL": "", "demo-1.0.dist-info/RECORD": ""},
    )
    with pytest.raises(InspectionError, match="no \\*.dist-info/METADATA"):
        inspect_wheel(wheel)


def test_refuses_metadata_that_is_not_in_a_top_level_dist_info(tmp_path):
    wheel = write_zip(
        tmp_path / "demo-1.0-py3-none-any.whl",
        {"demo/demo-1.0.dist-info/METADATA": "Name: demo\nVersion: 1.0\n"},
    )
    with pytest.raises(InspectionError, match="METADATA"):
        inspect_wheel(wheel)


def test_refuses_two_dist_info_directories(tmp_path):
    extra = {"other-2.0.dist-info/METADATA": "Name: other\nVersion: 2.0\n"}
    with pytest.raises(InspectionError, match="more than one"):
        inspect_wheel(simple_wheel(tmp_path, extra=extra))


@pytest.mark.parametrize(
    "member",
    ["/etc/cron.d/evil", "\\windows\\evil.dll", "C:/evil.dll", "c:evil.dll"],
)
def test_refuses_an_absolute_member(tmp_path, member):
    wheel = simple_wheel(tmp_path, extra={member: "boom"})
    with zipfile.ZipFile(wheel) as zf:
        assert member in zf.namelist()  # the hostile name really is in the zip
    with pytest.raises(InspectionError, match="absolute"):
        inspect_wheel(wheel)


@pytest.mark.parametrize(
    "member", ["../evil.py", "demo/../../evil.py", "demo/..", "demo\\..\\..\\evil.py"]
)
def test_refuses_a_member_with_dot_dot(tmp_path, member):
    wheel = simple_wheel(tmp_path, extra={member: "boom"})
    with pytest.raises(InspectionError, match=r"'\.\.'"):
        inspect_wheel(wheel)


def test_dots_inside_a_name_are_fine(tmp_path):
    wheel = simple_wheel(tmp_path, extra={"demo/data..txt": "ok", "demo/...": "ok"})
    assert inspect_wheel(wheel).name == "demo"


def test_refuses_duplicate_members(tmp_path):
    wheel = simple_wheel(tmp_path)
    with zipfile.ZipFile(wheel, "a") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("demo-1.0.dist-info/METADATA", "Name: demo\nVersion: 6.6.6\n")
    with pytest.raises(InspectionError, match="duplicate"):
        inspect_wheel(wheel)


def test_refuses_metadata_whose_name_differs_from_the_filename(tmp_path):
    meta = "Metadata-Version: 2.1\nName: somebody-else\nVersion: 1.0\n"
    with pytest.raises(InspectionError, match="Name 'somebody-else' does not match"):
        inspect_wheel(simple_wheel(tmp_path, metadata=meta))


def test_refuses_metadata_whose_version_differs_from_the_filename(tmp_path):
    meta = "Metadata-Version: 2.1\nName: demo\nVersion: 1.1\n"
    with pytest.raises(InspectionError, match="Version '1.1' does not match"):
        inspect_wheel(simple_wheel(tmp_path, metadata=meta))


def test_refuses_metadata_without_a_version_or_with_a_bad_one(tmp_path):
    with pytest.raises(InspectionError, match="no Name or no Version"):
        inspect_wheel(simple_wheel(tmp_path, metadata="Metadata-Version: 2.1\nName: demo\n"))
    (tmp_path / "demo-1.0-py3-none-any.whl").unlink()
    meta = "Metadata-Version: 2.1\nName: demo\nVersion: one\n"
    with pytest.raises(InspectionError, match="not valid"):
        inspect_wheel(simple_wheel(tmp_path, metadata=meta))


def test_equivalent_spellings_of_name_and_version_are_accepted(tmp_path):
    meta = "Metadata-Version: 2.1\nName: My.Demo_Pkg\nVersion: 1.0.0\n"
    wheel = simple_wheel(tmp_path, name="my_demo_pkg", metadata=meta)
    info = inspect_wheel(wheel)
    assert (info.name, info.version) == ("my-demo-pkg", "1.0")


def test_refuses_a_corrupt_member(tmp_path):
    wheel = simple_wheel(tmp_path, extra={"demo/blob.bin": b"\x7fELF" + b"\0" * 4096})
    data = bytearray(wheel.read_bytes())
    offset = data.index(b"\x7fELF" + b"\0" * 16)
    data[offset + 100] ^= 0xFF  # stored member: the CRC no longer matches
    wheel.write_bytes(bytes(data))
    with pytest.raises(InspectionError):
        inspect_wheel(wheel)


def test_preinstalled_must_not_be_a_bare_string(tmp_path):
    with pytest.raises(TypeError):
        inspect_wheel(simple_wheel(tmp_path), preinstalled="libc6")
