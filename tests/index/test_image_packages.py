"""Preinstalled apt packages per target image: parsing the lists people have, loading them with
``piw-image-packages`` (a real process on the test database), and the index showing each file's
apt dependencies less its distro's image list, without touching files.apt_depends."""

import json
import os
import subprocess

import pytest
from sqlalchemy import text

from piw_services.build_dispatch import store as dispatch
from piw_services.cli.image_packages import (
    MAX_BYTES,
    MAX_LINE,
    ImageListError,
    load,
    parse_package_list,
)
from piw_services.index import data, render
from tests.admin.test_actions import build, feed, release_rows
from tests.conftest import BIN, ROOT, wait_for
from tests.index.test_service import add_file, ingest, page, rows, www  # noqa: F401

#: build targets (ABI on a platform) as build_dispatch keys them
A311, A313 = "cp311-linux_armv7l", "cp313-linux_aarch64"

DPKG_L = """\
Desired=Unknown/Install/Remove/Purge/Hold
| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend
|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)
||/ Name                 Version            Architecture Description
+++-====================-==================-============-=================================
ii  adduser              3.134              all          add and remove users and groups
ii  libc6:armhf          2.36-9+rpt2+deb12u4 armhf       GNU C Library: Shared libraries
hi  raspi-config         20231012~bookworm  all          Raspberry Pi configuration tool
rc  libgone1:armhf       1.0-1              armhf        removed, its config files left
ii  zlib1g:arm64         1:1.2.13.dfsg-1    arm64
"""


# -- parsing -------------------------------------------------------------------------------
def test_dpkg_query_list_with_comments_blanks_and_crlf():
    listing = b"# dpkg-query -W -f '${Package}\\n' on a fresh image\n\nadduser\r\nlibc6\n" \
              b"  libstdc++6  \nlibc6\n# trailing comment\n"
    assert parse_package_list(listing) == ["adduser", "libc6", "libstdc++6"]


def test_dpkg_l_output_keeps_installed_packages_only():
    assert parse_package_list(DPKG_L.encode()) == [
        "adduser", "libc6", "raspi-config", "zlib1g"]


def test_raspberry_pi_os_packages_file():
    manifest = (b"adduser 3.134\nlibc6:armhf 2.36-9+rpt2+deb12u4\n"
                b"libraspberrypi0:arm64\t1:2.0+rpt20231005-1\nzlib1g 1:1.2.13.dfsg-1\n")
    assert parse_package_list(manifest) == [
        "adduser", "libc6", "libraspberrypi0", "zlib1g"]


def test_the_shipped_example_parses_and_says_it_is_one():
    example = (ROOT / "config/images/example.packages").read_bytes()
    assert parse_package_list(example) == [
        "example-name-only", "example-with-arch", "example-with-version"]
    assert b"EXAMPLE ONLY" in example


@pytest.mark.parametrize("listing, message", [
    (b"", "no package names"),
    (b"\n  \n# only a comment\n", "no package names"),
    (b"\x7fELF\x01\x01\x01\x00\x00\x00", "binary data"),
    (b"libc6\n\xff\xfe\xfdjunk\n", "not UTF-8 text (byte 6)"),
    (b"libc6\n" + b"a" * (MAX_LINE + 1) + b"\n", f"line 2 is longer than {MAX_LINE}"),
    (b"a" * (MAX_BYTES + 1), f"more than {MAX_BYTES} bytes"),
    (b"<html><body>404 Not Found</body></html>\n", "line 1 is not 'name', 'name version'"),
    (b"libc6\nLibC6\n", "line 2: 'LibC6' is not a Debian package name"),
    (b"libc6\n$(reboot)\n", "line 2: '$(reboot)' is not a Debian package name"),
    (b"x\n", "'x' is not a Debian package name"),
    (b"libc6 2.36 extra\n", "line 1 is not 'name', 'name version' or a dpkg -l line"),
])
def test_hostile_or_empty_input_is_refused_with_a_reason(listing, message):
    with pytest.raises(ImageListError) as caught:
        parse_package_list(listing)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 200  # a huge line is not echoed back


# -- loading and the index -----------------------------------------------------------------
def image(s, distro):
    return sorted(s.execute(text("SELECT package FROM image_packages WHERE distro = :d"),
                            {"d": distro}).scalars())


def dirty(s):
    return sorted(s.execute(text("SELECT package FROM index_dirty")).scalars())


def two_abis(db):
    """foo 1.0 built for cp311 (bookworm) and cp313 (trixie), one wheel each, both linking
    libzstd1, libc6 and zlib1g as the builder found them."""
    with db() as s, s.begin():
        dispatch.sync_abis(s, [(A311, "bookworm"), (A313, "trixie")])
        feed(s, release_rows("foo", "1.0"))
        build(s, "foo", "1.0", A311, files=("foo-1.0-cp311-cp311-linux_armv7l.whl",))
        build(s, "foo", "1.0", A313, files=("foo-1.0-cp313-cp313-linux_aarch64.whl",),
              label="pi5")
        s.execute(text("UPDATE files SET apt_depends = "
                       "CAST('[\"libzstd1\", \"libc6\", \"zlib1g\"]' AS json)"))
        s.execute(text("DELETE FROM index_dirty"))


def shown_apt(db):
    with db() as s:
        project, _ = data.load_project(s, "foo")
    return {f.abi: list(f.apt_depends) for v in project.versions for f in v.files}, project


def test_the_index_subtracts_the_image_of_the_files_distro(db):
    two_abis(db)
    assert shown_apt(db)[0] == {A311: ["libzstd1", "libc6", "zlib1g"],
                                A313: ["libzstd1", "libc6", "zlib1g"]}
    with db() as s, s.begin():
        assert load(s, "bookworm", ["libc6", "adduser"], "bookworm.packages") == (2, 0, 1)
        assert dirty(s) == ["foo"]
        load(s, "bullseye", ["libzstd1", "zlib1g"], "other")  # no ABI builds for it
    apt, project = shown_apt(db)
    assert apt == {A311: ["libzstd1", "zlib1g"], A313: ["libzstd1", "libc6", "zlib1g"]}
    with db() as s:  # what the builder found stays as it was
        assert {json.dumps(a) for a in s.execute(text("SELECT apt_depends FROM files"))
                .scalars()} == {'["libzstd1", "libc6", "zlib1g"]'}
        site = data.site_info(s, "")
    served = json.loads(render.project_json(project))
    files = {f["filename"]: f["apt_depends"] for v in served["versions"] for f in v["files"]}
    assert files["foo-1.0-cp311-cp311-linux_armv7l.whl"] == ["libzstd1", "zlib1g"]
    html = render.project_html(project, site)
    assert "sudo apt install libzstd1 zlib1g</code>" in html
    assert "sudo apt install libzstd1 libc6 zlib1g</code>" in html  # the trixie wheel

    with db() as s, s.begin():  # a new list replaces the old one whole
        s.execute(text("DELETE FROM index_dirty"))
        assert load(s, "bookworm", ["adduser", "zlib1g", "libzstd1", "libc6"], "new") == (
            2, 0, 1)
        assert load(s, "bookworm", ["zlib1g"], "newer") == (0, 3, 1)
        s.execute(text("DELETE FROM index_dirty"))
        assert load(s, "bookworm", ["zlib1g"], "again") == (0, 0, 0)  # nothing to re-render
        assert dirty(s) == [] and image(s, "bookworm") == ["zlib1g"]
    assert shown_apt(db)[0][A311] == ["libzstd1", "libc6"]


def test_a_file_whose_abi_is_unknown_shows_everything(db):
    two_abis(db)
    with db() as s, s.begin():
        load(s, "bookworm", ["libc6", "libzstd1", "zlib1g"], "all of them")
        s.execute(text("DELETE FROM build_abis WHERE abi = 'cp311-linux_armv7l'"))
    assert shown_apt(db)[0][A311] == ["libzstd1", "libc6", "zlib1g"]
    with db() as s, s.begin():
        dispatch.sync_abis(s, [(A311, "bookworm"), (A313, "trixie")])
    assert shown_apt(db)[0][A311] == []


# -- the command ---------------------------------------------------------------------------
def cli(db_url, *args, stdin=None):
    env = dict(os.environ, PIW_DB_URL=db_url)
    env.pop("PIW_CONFIG", None)
    return subprocess.run([str(BIN / "piw-image-packages"), *args], env=env, cwd=ROOT,
                          input=stdin, capture_output=True, timeout=60)


def out(proc):
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_the_command_loads_lists_and_refuses(db, db_url, tmp_path):
    two_abis(db)
    listing = tmp_path / "bookworm.packages"
    listing.write_text("adduser 3.134\nlibc6:armhf 2.36-9+rpt2+deb12u4\n")
    assert out(cli(db_url, "load", "--distro", "bookworm", str(listing))) == (
        0, "bookworm: 2 packages (+2 -0); 1 packages marked for re-render\n", "")
    assert out(cli(db_url, "load", "--distro", "bookworm", "-", stdin=DPKG_L.encode())) == (
        0, "bookworm: 4 packages (+2 -0); 1 packages marked for re-render\n", "")
    assert out(cli(db_url, "load", "--distro", "bookworm", "-", stdin=b"libc6\nzlib1g\n")) == (
        0, "bookworm: 2 packages (+0 -2); 1 packages marked for re-render\n", "")
    code, stdout, stderr = out(cli(db_url, "load", "--distro", "sid", "-", stdin=b"libc6\n"))
    assert (code, stdout) == (0, "sid: 1 packages (+1 -0); 0 packages marked for re-render\n")
    assert stderr == "note: no build ABI uses distro sid yet (build_abis)\n"
    with db() as s:
        assert image(s, "bookworm") == ["libc6", "zlib1g"]

    code, stdout, stderr = out(cli(db_url, "list"))
    assert (code, stderr) == (0, "")
    lines = stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [["bookworm", "2 packages"],
                                                        ["sid", "1 packages"]]
    assert lines[0].endswith("\tfrom stdin\tABIs: cp311-linux_armv7l") and "\tloaded 20" in lines[0]
    assert lines[1].endswith("ABIs: (none yet)")
    assert out(cli(db_url, "list", "--distro", "trixie")) == (
        0, "no image lists loaded for trixie\n", "")

    # refusals change nothing, say why in one line, and exit 2
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02" * 1000)
    for args, stdin, message in [
        (("load", "--distro", "bookworm", str(junk)), None,
         f"piw-image-packages: {junk}: binary data (NUL bytes): not a package list\n"),
        (("load", "--distro", "bookworm", "-"), b"# nothing\n\n",
         "piw-image-packages: -: no package names in it (blank lines and comments only)\n"),
        (("load", "--distro", "bookworm", "-"), b"z" * 100_000,
         f"piw-image-packages: -: line 1 is longer than {MAX_LINE} characters\n"),
        (("load", "--distro", "bookworm", str(tmp_path / "nope")), None,
         f"piw-image-packages: {tmp_path / 'nope'}: No such file or directory\n"),
        (("load", "--distro", "Book Worm", "-"), b"libc6\n",
         "piw-image-packages: 'Book Worm' is not a distro name (like bookworm)\n"),
    ]:
        assert out(cli(db_url, *args, stdin=stdin)) == (2, "", message), args
    with db() as s:
        assert image(s, "bookworm") == ["libc6", "zlib1g"]
    code, stdout, stderr = out(cli("postgresql+psycopg2://postgres@127.0.0.1:1/x", "list"))
    assert (code, stdout) == (2, "")
    assert stderr.startswith("piw-image-packages: cannot reach the database "
                             "postgresql+psycopg2://postgres@127.0.0.1:1/x: ")
    assert "Traceback" not in stderr
    code, _, stderr = out(cli(db_url, "load", "--distro", "bookworm"))
    assert code == 2 and "FILE" in stderr  # argparse's usage error


def test_a_load_rerenders_the_running_index(www, db, db_url, rabbit_config):  # noqa: F811
    with db() as s, s.begin():
        dispatch.sync_abis(s, [(A311, "bookworm")])
    ingest(db, rows(("zed", None, "create"), ("zed", "1.0", "new release"),
                    ("zed", "1.0", "add source file zed-1.0.tar.gz")))
    add_file(db, www, rabbit_config, "zed", "1.0", "zed-1.0-cp311-cp311-linux_armv7l.whl",
             apt_depends=["libc6", "libzstd1"])
    wait_for(lambda: "sudo apt install libc6 libzstd1" in (
        page(www, "project/zed/index.html") or ""), 20, what="the project page")
    assert cli(db_url, "load", "--distro", "bookworm", "-", stdin=b"libc6\n").returncode == 0
    wait_for(lambda: "sudo apt install libzstd1</code>" in page(www, "project/zed/index.html"),
             20, what="the page without libc6")
    assert json.loads(page(www, "project/zed/json/index.json"))["versions"][0]["files"][0][
        "apt_depends"] == ["libzstd1"]
