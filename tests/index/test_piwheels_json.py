"""/project/<name>/json/ and /packages.json as scripts written for piwheels.org read them.

The fixtures are what piwheels serves, written from its code: ``fixtures/piwheels_project.json``
from master/the_scribe.py ``write_project_json`` (keys, order and value types; ``file_url``
from ``_make_file_url`` with the files table's default location ``/simple``; ``released`` as
``%Y-%m-%d %H:%M:%S``; ``skip_reason`` "" when not skipped, as initdb's get_project_data gives
it; ``requires_python`` null or a string) and templates/json.pt (the documented schema);
``fixtures/piwheels_packages.json`` from ``write_search_index`` (``[name, 30 days, all]``).
Ours must have every key piwheels has, at the same position and of the same type; our extra
fields come after, where piwheels' readers do not look."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from piw_services.index import render
from piw_services.index.model import IndexFile, PackageSummary, Project, ShownVersion

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 23, 15, 4, 5, 123456, tzinfo=UTC)
#: Maps whose keys are data (versions, filenames), not fields.
DATA_KEYED = {"releases", "files"}


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


def types_seen(doc, path="", seen=None):
    """{field path: the JSON types piwheels gives it} over the whole fixture."""
    seen = {} if seen is None else seen
    seen.setdefault(path, set()).add(type(doc))
    if isinstance(doc, dict):
        for key, value in doc.items():
            types_seen(value, f"{path}/*" if path.rsplit("/", 1)[-1] in DATA_KEYED
                       else f"{path}/{key}", seen)
    elif isinstance(doc, list):
        for value in doc:
            types_seen(value, f"{path}[]", seen)
    return seen


def mismatches(ours, theirs, seen, path=""):
    """Where *ours* differs from piwheels' *theirs* in keys, their positions or types."""
    found = []
    if type(ours) not in seen.get(path, {type(theirs)}):
        return [f"{path or '/'}: {type(ours).__name__}, piwheels has "
                f"{sorted(t.__name__ for t in seen[path])}"]
    if isinstance(theirs, dict) and isinstance(ours, dict):
        if path.rsplit("/", 1)[-1] in DATA_KEYED:
            sample = next(iter(theirs.values()), None)
            for value in ours.values():
                if sample is not None:
                    found += mismatches(value, sample, seen, f"{path}/*")
            return found
        if list(ours)[:len(theirs)] != list(theirs):
            found.append(f"{path or '/'}: keys {list(ours)[:len(theirs)]}, piwheels has "
                         f"{list(theirs)} in that order")
        for key, value in theirs.items():
            if key in ours:
                found += mismatches(ours[key], value, seen, f"{path}/{key}")
    elif isinstance(theirs, list) and isinstance(ours, list) and theirs:
        for value in ours:
            found += mismatches(value, theirs[0], seen, f"{path}[]")
    return found


def wheel(filename, **kw):
    kw.setdefault("sha256", "ab" * 32)
    kw.setdefault("size", 123_456)
    kw.setdefault("upload_time", T0)
    kw.setdefault("requires_python", None)
    kw.setdefault("metadata_sha256", None)
    return IndexFile(filename=filename, **kw)


@pytest.fixture
def project():
    return Project(
        name="foo-bar", display_name="Foo.Bar", summary=None, downloads_30d=12,
        downloads_all=3456, versions=(
            ShownVersion("2.0", T0, False, files=(
                wheel("foo_bar-2.0-cp311-cp311-linux_armv7l.whl", abi="cp311-linux_armv7l",
                      requires_python=">=3.9", apt_depends=("libssl3", "libffi8"),
                      requires_dist=("requests>=2", "Six", "pytest; extra == 'test'",
                                     "tomli; python_version < '3.11'", "not a requirement")),
                wheel("foo_bar-2.0-cp311-cp311-linux_armv6l.whl", abi="cp311-linux_armv7l"),
                wheel("foo_bar-2.0-py3-none-any.whl", abi="cp313-linux_aarch64"))),
            ShownVersion("1.0rc1", T0 - timedelta(days=3), True, yanked=True,
                        yanked_reason="broken", skip="binary only"),
            ShownVersion("0.1", None, False)))


def test_project_json_has_piwheels_keys_positions_and_types(project):
    theirs = fixture("piwheels_project.json")
    ours = json.loads(render.project_json(project, "https://piw.example"))
    assert mismatches(ours, theirs, types_seen(theirs)) == []
    assert list(ours)[5:] == ["name", "display_name", "downloads", "versions"]  # ours, after


def test_project_json_values(project):
    data = json.loads(render.project_json(project, "https://piw.example"))
    assert data["package"] == "foo-bar" and data["summary"] == ""
    assert data["pypi_url"] == "https://pypi.org/project/foo-bar"
    assert data["piwheels_url"] == "https://piw.example/project/foo-bar/"
    assert list(data["releases"]) == ["2.0", "1.0rc1", "0.1"]  # newest first, as piwheels
    v2, rc, old = data["releases"].values()
    assert v2["released"] == "2026-11-23 15:04:05" and old["released"] == ""
    assert (v2["prerelease"], v2["yanked"], v2["skip_reason"]) == (False, False, "")
    assert (rc["prerelease"], rc["yanked"], rc["skip_reason"]) == (True, True, "binary only")
    armv7l = v2["files"]["foo_bar-2.0-cp311-cp311-linux_armv7l.whl"]
    assert armv7l == {
        "file_url": "/simple/foo-bar/foo_bar-2.0-cp311-cp311-linux_armv7l.whl",
        "filehash": "ab" * 32, "filesize": 123_456, "builder_abi": "cp311",
        "file_abi_tag": "cp311", "platform": "linux_armv7l", "requires_python": ">=3.9",
        "apt_dependencies": ["libffi8", "libssl3"],
        # no extra's, canonical names, the malformed one left out (piwheels' builder.py)
        "pip_dependencies": ["requests", "six", "tomli"]}
    pure = v2["files"]["foo_bar-2.0-py3-none-any.whl"]
    assert (pure["builder_abi"], pure["file_abi_tag"], pure["platform"]) == \
        ("cp313", "none", "any")
    assert v2["files"]["foo_bar-2.0-cp311-cp311-linux_armv6l.whl"]["platform"] == "linux_armv6l"


def test_piwheels_documented_scripts_run_unchanged(project, capsys):
    """The example scripts of piwheels' templates/json.pt, on our documents."""
    package = json.loads(render.project_json(project))
    for version, release in package['releases'].items():
        print(version, release['released'])
    for version, info in package['releases'].items():
        if info['files']:
            print('{}: {} files'.format(version, len(info['files'])))  # noqa: UP032
        else:
            print('{}: No files'.format(version))  # noqa: UP032
    packages = json.loads(render.packages_json([PackageSummary("numpy", "Arrays", 100, 1000),
                                                PackageSummary("foo-bar", None, 12, 3456)]))
    packages = {
        pkg: (d_month, d_all)
        for pkg, d_month, d_all, *_ in packages
    }
    d_month, d_all = packages['numpy']
    print('numpy', "has had", d_month, "downloads in the last month")
    assert capsys.readouterr().out.splitlines() == [
        "2.0 2026-11-23 15:04:05", "1.0rc1 2026-11-20 15:04:05", "0.1 ",
        "2.0: 3 files", "1.0rc1: No files", "0.1: No files",
        "numpy has had 100 downloads in the last month"]
    assert packages == {"numpy": (100, 1000), "foo-bar": (12, 3456)}


def test_packages_json_rows_start_as_piwheels_rows():
    theirs = fixture("piwheels_packages.json")
    ours = json.loads(render.packages_json([PackageSummary("foo-bar", "Bars", 12, 3456),
                                            PackageSummary("x", None)]))
    assert [[type(v) for v in row[:3]] for row in ours] == \
        [[type(v) for v in row] for row in theirs][:1] * 2
    assert ours == [["foo-bar", 12, 3456, "Bars"], ["x", 0, 0, ""]]


@pytest.mark.parametrize("requires_dist, names", [
    ((), []),
    (("A_B.c>=1", "a-b-c<3"), ["a-b-c"]),
    (("x; extra == 'dev'", "y; python_version >= '3' and extra == \"t\""), []),
    (("", "   ", "!!", "z @ https://example.org/z.whl"), ["z"]),
])
def test_pip_dependencies(requires_dist, names):
    assert render.pip_dependencies(requires_dist) == names
