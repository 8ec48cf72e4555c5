"""owning_packages: one dpkg -S call, merged-/usr retries, and hosts without dpkg."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders.inspection import owning_packages, parse_ldd

FAKE_DPKG = """\
#!{python}
import json, sys
known = {known}
with open({log!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
missing = False
for path in sys.argv[2:]:
    if path in known:
        print(known[path] + ": " + path)
    else:
        print("dpkg-query: no path found matching pattern " + path, file=sys.stderr)
        missing = True
sys.exit(1 if missing else 0)
"""


@pytest.fixture
def fake_dpkg(tmp_path, monkeypatch):
    """Put a dpkg on PATH that owns exactly ``known`` paths; returns a reader of its calls."""

    def install(known: dict[str, str]):
        bindir = tmp_path / "bin"
        bindir.mkdir()
        log = tmp_path / "dpkg-calls.jsonl"
        script = bindir / "dpkg"
        script.write_text(FAKE_DPKG.format(python=sys.executable, known=repr(known), log=str(log)))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

        def calls():
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

        return calls

    return install


def test_one_call_for_all_paths_when_all_are_found(fake_dpkg):
    calls = fake_dpkg(
        {"/lib/x/libz.so.1": "zlib1g:armhf", "/lib/x/libc.so.6": "libc6:armhf, libc6:arm64"}
    )
    result = owning_packages(["/lib/x/libz.so.1", "/lib/x/libc.so.6", "/lib/x/libz.so.1"])
    assert result == {"/lib/x/libz.so.1": "zlib1g", "/lib/x/libc.so.6": "libc6"}
    assert calls() == [["-S", "/lib/x/libz.so.1", "/lib/x/libc.so.6"]]


def test_unmatched_paths_are_retried_with_and_without_usr(fake_dpkg):
    # The loader reports /usr/lib/... but the package shipped /lib/... (and the reverse).
    calls = fake_dpkg({"/lib/x/libz.so.1": "zlib1g", "/usr/lib/x/libffi.so.8": "libffi8"})
    result = owning_packages(["/usr/lib/x/libz.so.1", "/lib/x/libffi.so.8", "/opt/nobody.so"])
    assert result == {
        "/usr/lib/x/libz.so.1": "zlib1g",
        "/lib/x/libffi.so.8": "libffi8",
        "/opt/nobody.so": None,
    }
    first, second = calls()
    assert first == ["-S", "/usr/lib/x/libz.so.1", "/lib/x/libffi.so.8", "/opt/nobody.so"]
    assert {"/lib/x/libz.so.1", "/usr/lib/x/libffi.so.8", "/usr/opt/nobody.so"} <= set(second)


def test_unmatched_path_is_retried_as_its_realpath(fake_dpkg, tmp_path):
    real = tmp_path / "real" / "libreal.so.1.2.3"
    real.parent.mkdir()
    real.write_bytes(b"")
    link = tmp_path / "libreal.so.1"
    link.symlink_to(real)
    fake_dpkg({os.path.realpath(real): "libreal1"})
    assert owning_packages([str(link)]) == {str(link): "libreal1"}


def test_no_paths_means_no_dpkg_call(fake_dpkg):
    calls = fake_dpkg({})
    assert owning_packages([]) == {}
    assert calls() == []


def test_relative_paths_are_not_queried(fake_dpkg):
    calls = fake_dpkg({"/lib/x/libz.so.1": "zlib1g"})
    assert owning_packages(["libz.so.1", "/lib/x/libz.so.1"]) == {
        "libz.so.1": None,
        "/lib/x/libz.so.1": "zlib1g",
    }
    assert calls() == [["-S", "/lib/x/libz.so.1"]]


def test_without_dpkg_every_answer_is_none(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert owning_packages(["/lib/x/libz.so.1", "/bin/sh"]) == {
        "/lib/x/libz.so.1": None,
        "/bin/sh": None,
    }


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs a Debian host")
def test_real_dpkg_owns_libc_under_both_spellings():
    ldd = subprocess.run(["ldd", "/bin/true"], capture_output=True, text=True, check=True)
    libc = parse_ldd(ldd.stdout)["libc.so.6"]
    assert libc is not None
    other = libc[len("/usr") :] if libc.startswith("/usr/") else "/usr" + libc
    result = owning_packages([libc, other, "/no/such/file.so"])
    assert result == {libc: "libc6", other: "libc6", "/no/such/file.so": None}
    assert Path(libc).exists()
