"""Real pip builds against the fake, and the piw-fake-pypi command line."""

from __future__ import annotations

import importlib.metadata
import json
import re
import signal
import subprocess
import sys
import xmlrpc.client
import zipfile

import pytest
import requests

from piw_services.fake_pypi.buildreqs import write_build_requirements

from .fake_pypi_helpers import PYTHON, ev, pip_cmd, pip_env

EVENTS = [
    ev("Pure.Pkg", None, "create", 1),
    ev("Pure.Pkg", "1.0", "new release", 2, requires_python=">=3.8", summary="pure"),
    ev("Pure.Pkg", "1.0", "add source file pure_pkg-1.0.tar.gz", 3),
    ev("zlib-user", "0.2", "new release", 4, kind="c-zlib"),
    ev("broken-pkg", "0.1", "new release", 5, kind="broken"),
]


def pip_wheel(server, tmp_path, requirement, *extra):
    out = tmp_path / "wheels"
    cmd = pip_cmd(
        "wheel",
        "--no-deps",
        "--no-cache-dir",
        "--index-url",
        server.url + "/simple/",
        "-w",
        str(out),
        *extra,
        requirement,
    )
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=pip_env(tmp_path / "home"), timeout=300
    )
    return result, sorted(out.glob("*.whl")) if out.exists() else []


@pytest.fixture
def server(make_server, tmp_path):
    return make_server(EVENTS, packages_dir=tmp_path / "packages")


def test_pip_wheel_builds_a_pure_sdist(server, tmp_path):
    result, wheels = pip_wheel(server, tmp_path, "pure-pkg==1.0", "--no-build-isolation")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [w.name for w in wheels] == ["pure_pkg-1.0-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as zf:
        assert "pure_pkg.py" in zf.namelist()
        metadata = zf.read("pure_pkg-1.0.dist-info/METADATA").decode()
    assert "Requires-Python: >=3.8" in metadata


def test_pip_wheel_builds_a_c_extension_linking_libz(server, tmp_path):
    result, wheels = pip_wheel(server, tmp_path, "zlib_user==0.2", "--no-build-isolation")
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = wheels
    assert re.fullmatch(r"zlib_user-0\.2-cp3\d+-cp3\d+-linux_\w+\.whl", wheel.name)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    (so,) = unpacked.glob("zlib_user*.so")
    ldd = subprocess.run(["ldd", str(so)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^\s*libz\.so\.1 => ", ldd, re.MULTILINE), ldd
    check = subprocess.run(
        [
            PYTHON,
            "-c",
            "import zlib, zlib_user; assert zlib_user.crc32(b'abc') == zlib.crc32(b'abc')"
            "; print(zlib_user.zlib_version(), zlib_user.__version__)",
        ],  # fmt: skip
        cwd=unpacked,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split()[1] == "0.2"


def test_pip_wheel_fails_on_a_broken_sdist(server, tmp_path):
    result, wheels = pip_wheel(server, tmp_path, "broken-pkg==0.1", "--no-build-isolation")
    assert result.returncode != 0
    assert "deliberately broken" in result.stdout + result.stderr
    assert wheels == []


def test_pip_download_fetches_the_served_file(server, tmp_path):
    cmd = pip_cmd(
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-build-isolation",
        "--no-cache-dir",
        "--index-url",
        server.url + "/simple/",
        "-d",
        str(tmp_path / "dl"),
        "pure.pkg==1.0",
    )
    result = subprocess.run(cmd, capture_output=True, text=True, env=pip_env(tmp_path / "home"))
    assert result.returncode == 0, result.stdout + result.stderr
    (sdist,) = (tmp_path / "dl").iterdir()
    assert sdist.read_bytes() == requests.get(server.url + "/packages/pure_pkg-1.0.tar.gz").content


def test_pip_wheel_with_build_isolation_from_the_packages_dir(make_server, tmp_path):
    packages = tmp_path / "packages"
    packages.mkdir()
    try:
        write_build_requirements(packages)
    except importlib.metadata.PackageNotFoundError as exc:
        pytest.skip(f"cannot repack build requirements: {exc}")
    server = make_server(EVENTS, packages_dir=packages)
    index = requests.get(server.url + "/simple/").text
    assert "/simple/setuptools/" in index and "/simple/wheel/" in index
    result, wheels = pip_wheel(server, tmp_path, "pure-pkg==1.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [w.name for w in wheels] == ["pure_pkg-1.0-py3-none-any.whl"]
    # The isolated build environment was populated from the fake: sdist + 3 wheels.
    assert "Installing build dependencies: finished with status 'done'" in result.stdout
    assert server.stats()["files_served"] == 4


# -- the command line -----------------------------------------------------------------


def _start_cli(*args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "piw_services.fake_pypi", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    return proc, line


def _stop_cli(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(tmp_path, sig):
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    proc, line = _start_cli(
        "--events", str(events), "--port", "0", "--page-size", "2", "--fail", "429:1", "fault:1"
    )
    try:
        match = re.fullmatch(r"piw-fake-pypi serving 5 events on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match.group(1)
        rpc = xmlrpc.client.ServerProxy(url + "/pypi")
        with pytest.raises(xmlrpc.client.ProtocolError):
            rpc.changelog_last_serial()
        with pytest.raises(xmlrpc.client.Fault):
            rpc.changelog_last_serial()
        assert rpc.changelog_last_serial() == 5
        assert [row[4] for row in rpc.changelog_since_serial(0)] == [1, 2]
        assert requests.get(url + "/simple/pure-pkg/").status_code == 200
    finally:
        returncode, stderr = _stop_cli(proc, sig)
    assert returncode == 0, stderr
    assert "GET /simple" not in stderr  # quiet by default


def test_cli_starts_with_a_missing_events_file_and_logs_with_v(tmp_path):
    proc, line = _start_cli("--events", str(tmp_path / "not-yet.jsonl"), "-v")
    try:
        assert line.startswith("piw-fake-pypi serving 0 events on http://127.0.0.1:")
        url = line.split()[-1]
        assert xmlrpc.client.ServerProxy(url + "/pypi").changelog_last_serial() == 0
        response = requests.post(
            url + "/_control/events",
            json=[{"name": "a", "version": None, "timestamp": 1, "action": "create"}],
        )
        assert response.json() == {"last_serial": 1}
    finally:
        returncode, stderr = _stop_cli(proc)
    assert returncode == 0
    assert "POST /_control/events" in stderr


def test_cli_refuses_a_bad_events_file(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(ev("a", None, "create", 5))
        + "\n"
        + json.dumps(ev("b", None, "create", 4))
        + "\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "piw_services.fake_pypi", "--events", str(events)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "line 2" in result.stderr and "ascending serial order" in result.stderr
    assert result.stdout == ""
