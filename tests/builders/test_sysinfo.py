"""The health and identity readers, on fake /proc, /sys and /etc trees and on this machine."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from builders import sysinfo
from builders.sysinfo import (
    abi_tag,
    board,
    cpu_temperature,
    disk,
    distro,
    load_average,
    memory,
    parse_meminfo,
    parse_os_release,
    parse_vcgencmd_temp,
    platform_tag,
    snapshot,
)

# A Raspberry Pi 4 (4 GB) running Raspberry Pi OS bookworm, abridged.
MEMINFO = """\
MemTotal:        3882924 kB
MemFree:          251904 kB
MemAvailable:    2920240 kB
Buffers:          123456 kB
Cached:          2408208 kB
SwapCached:            0 kB
Active(anon):      52000 kB
SwapTotal:        102396 kB
SwapFree:          98300 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""

# Raspbian buster's file: no VERSION_CODENAME, single-quoted and escaped values elsewhere.
OLD_RASPBIAN = """\
PRETTY_NAME="Raspbian GNU/Linux 10 (buster)"
NAME='Raspbian GNU/Linux'
VERSION_ID="10"
VERSION="10 (buster)"
ID=raspbian
ID_LIKE=debian
# a comment
SUPPORT_URL="http://www.raspbian.org/RaspbianForums \\"quoted\\""
"""


def write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.fixture
def no_vcgencmd(monkeypatch, tmp_path):
    """A PATH with no vcgencmd on it, even when the tests run on a real Pi."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def fake_vcgencmd(monkeypatch, tmp_path):
    """Put a vcgencmd script printing ``output`` (exit ``code``) first on PATH."""

    def install(output: str, code: int = 0) -> None:
        bindir = tmp_path / "vc-bin"
        bindir.mkdir(exist_ok=True)
        script = bindir / "vcgencmd"
        script.write_text(
            f'#!/bin/sh\n[ "$1" = measure_temp ] || exit 9\nprintf %s {output!r}\nexit {code}\n'
        )
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")

    return install


# -- temperature ---------------------------------------------------------------------------


def test_temperature_is_the_hottest_thermal_zone(tmp_path, no_vcgencmd):
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "48312\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "61850\n")
    write(tmp_path, "sys/class/thermal/thermal_zone2/temp", "-5000\n")
    write(tmp_path, "sys/class/thermal/thermal_zone3/temp", "garbage\n")
    write(tmp_path, "sys/class/thermal/thermal_zone4/temp", "")
    (tmp_path / "sys/class/thermal/thermal_zone5").mkdir()  # no temp file at all
    write(tmp_path, "sys/class/thermal/cooling_device0/cur_state", "99999999\n")
    assert cpu_temperature(tmp_path) == pytest.approx(61.85)


def test_temperature_with_only_garbage_falls_back_to_none(tmp_path, no_vcgencmd):
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "\x00\xff nonsense")
    assert cpu_temperature(tmp_path) is None
    assert cpu_temperature(tmp_path / "missing") is None


def test_temperature_falls_back_to_vcgencmd(tmp_path, fake_vcgencmd):
    fake_vcgencmd("temp=48.3'C\n")
    assert cpu_temperature(tmp_path) == pytest.approx(48.3)


def test_thermal_zones_win_over_vcgencmd(tmp_path, fake_vcgencmd):
    fake_vcgencmd("temp=99.9'C\n")
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "50000")
    assert cpu_temperature(tmp_path) == 50.0


@pytest.mark.parametrize(("output", "code"), [('error=1 error_msg="bad"\n', 0), ("", 255)])
def test_a_failing_vcgencmd_gives_none(tmp_path, fake_vcgencmd, output, code):
    fake_vcgencmd(output, code)
    assert cpu_temperature(tmp_path) is None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("temp=48.3'C\n", 48.3),
        ("temp=55'C", 55.0),
        ("temp=-3.5'C", -3.5),
        ("temp=48.3C", 48.3),
        ("temp=hot'C", None),
        ("", None),
        ("VCHI initialization failed", None),
    ],
)
def test_parse_vcgencmd_temp(output, expected):
    result = parse_vcgencmd_temp(output)
    assert result == (None if expected is None else pytest.approx(expected))


# -- load, memory, disk ----------------------------------------------------------------------


def test_load_average_is_three_floats(monkeypatch):
    one, five, fifteen = load_average()
    assert all(isinstance(x, float) and x >= 0 for x in (one, five, fifteen))

    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(sysinfo.os, "getloadavg", unavailable)
    assert load_average() == (0.0, 0.0, 0.0)


def test_memory_from_meminfo(tmp_path):
    write(tmp_path, "proc/meminfo", MEMINFO)
    assert memory(tmp_path) == {
        "total": 3882924 * 1024,
        "available": 2920240 * 1024,
        "swap_total": 102396 * 1024,
        "swap_free": 98300 * 1024,
    }


def test_memory_without_memavailable_estimates_it(tmp_path):
    old = "\n".join(line for line in MEMINFO.splitlines() if "MemAvailable" not in line)
    write(tmp_path, "proc/meminfo", old)
    assert memory(tmp_path)["available"] == (251904 + 123456 + 2408208) * 1024


@pytest.mark.parametrize("content", [None, "", "garbage\n\x00\x01", "MemTotal: lots kB\n"])
def test_memory_tolerates_missing_and_garbled_files(tmp_path, content):
    if content is not None:
        write(tmp_path, "proc/meminfo", content)
    assert memory(tmp_path) == {"total": 0, "available": 0, "swap_total": 0, "swap_free": 0}


def test_parse_meminfo_skips_what_it_cannot_read():
    text = "MemTotal: 10 kB\nweird line\nHugePages_Total: 3\nOdd: 5 parsecs\nActive(anon): 1 kB\n"
    assert parse_meminfo(text) == {"MemTotal": 10240, "HugePages_Total": 3, "Active(anon)": 1024}


def test_disk(tmp_path):
    usage = disk(tmp_path)
    assert set(usage) == {"total", "free"}
    assert usage["total"] > 0 and 0 <= usage["free"] <= usage["total"]
    assert disk(tmp_path / "does" / "not" / "exist") == {"total": 0, "free": 0}


# -- identity ------------------------------------------------------------------------------


def test_board_strips_the_device_tree_nul(tmp_path):
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert board(tmp_path) == "Raspberry Pi 4 Model B Rev 1.4"


def test_board_from_sysfs_when_proc_has_no_device_tree(tmp_path):
    write(
        tmp_path, "sys/firmware/devicetree/base/model", b"Raspberry Pi 3 Model B Plus Rev 1.3\x00"
    )
    assert board(tmp_path) == "Raspberry Pi 3 Model B Plus Rev 1.3"


@pytest.mark.parametrize("content", [None, b"", b"\x00", b"  \x00\n"])
def test_board_is_none_off_a_pi(tmp_path, content):
    if content is not None:
        write(tmp_path, "proc/device-tree/model", content)
    assert board(tmp_path) is None


def test_board_survives_invalid_utf8(tmp_path):
    write(tmp_path, "proc/device-tree/model", b"Pi \xff\xfe\x00")
    assert board(tmp_path) == "Pi \ufffd\ufffd"


def test_distro_from_os_release(tmp_path):
    write(tmp_path, "etc/os-release", OS_RELEASE)
    assert distro(tmp_path) == {"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm"}


def test_distro_takes_an_old_raspbian_codename_from_version(tmp_path):
    write(tmp_path, "usr/lib/os-release", OLD_RASPBIAN)  # the fallback location
    assert distro(tmp_path) == {"ID": "raspbian", "VERSION_ID": "10", "VERSION_CODENAME": "buster"}


@pytest.mark.parametrize("content", [None, "", "\x00\x01 garbage\n=\n'unbalanced\nID='oops\n"])
def test_distro_tolerates_missing_and_garbled_files(tmp_path, content):
    if content is not None:
        write(tmp_path, "etc/os-release", content)
    result = distro(tmp_path)
    assert set(result) == {"ID", "VERSION_ID", "VERSION_CODENAME"}
    assert result["VERSION_ID"] is None and result["VERSION_CODENAME"] is None


def test_parse_os_release_undoes_quoting():
    values = parse_os_release(OLD_RASPBIAN)
    assert values["NAME"] == "Raspbian GNU/Linux"
    assert values["SUPPORT_URL"] == 'http://www.raspbian.org/RaspbianForums "quoted"'
    assert "# a comment" not in values and len(values) == 7


@pytest.mark.parametrize(
    ("platform", "is_32bit", "expected"),
    [
        ("linux-x86_64", False, "linux_x86_64"),
        ("linux-aarch64", False, "linux_aarch64"),
        ("linux-armv7l", True, "linux_armv7l"),
        ("linux-armv6l", True, "linux_armv6l"),
        ("linux-aarch64", True, "linux_armv7l"),  # 32-bit Raspberry Pi OS on a 64-bit kernel
        ("linux-x86_64", True, "linux_i686"),
        ("macosx-11.0-arm64", False, "macosx_11_0_arm64"),
    ],
)
def test_platform_tag(platform, is_32bit, expected):
    assert platform_tag(platform, is_32bit) == expected


def test_this_machines_tags():
    expected_arch = {"x86_64": "x86_64", "aarch64": "aarch64", "armv7l": "armv7l"}
    arch = os.uname().machine
    if sys.maxsize > 2**32 and arch in expected_arch:
        assert platform_tag() == f"linux_{expected_arch[arch]}"
    assert platform_tag().startswith("linux_")
    major, minor = sys.version_info[:2]
    assert abi_tag().startswith(f"cp{major}{minor}")


# -- the report ------------------------------------------------------------------------------


def test_snapshot_on_this_machine(tmp_path):
    report = snapshot(tmp_path)
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {"cpu_temperature", "load_average", "memory", "disk"}
    temperature = report["cpu_temperature"]
    assert temperature is None or (isinstance(temperature, float) and -40 < temperature < 150)
    assert len(report["load_average"]) == 3
    assert all(isinstance(x, float) for x in report["load_average"])
    mem = report["memory"]
    assert set(mem) == {"total", "available", "swap_total", "swap_free"}
    assert all(isinstance(v, int) for v in mem.values())
    assert mem["total"] > 64 * 1024 * 1024 and 0 < mem["available"] <= mem["total"]
    assert 0 <= mem["swap_free"] <= mem["swap_total"]
    assert report["disk"]["total"] > 0 and 0 <= report["disk"]["free"] <= report["disk"]["total"]


def test_snapshot_on_a_fake_root(tmp_path, no_vcgencmd):
    write(tmp_path, "proc/meminfo", MEMINFO)
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "47000")
    report = snapshot(tmp_path, root=tmp_path)
    assert report["cpu_temperature"] == 47.0
    assert report["memory"]["total"] == 3882924 * 1024
    assert snapshot(tmp_path / "missing", root=tmp_path / "missing")["memory"]["total"] == 0
