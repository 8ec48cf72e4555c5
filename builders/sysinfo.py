"""What piw-builder reports about the Pi it runs on: temperature, load, memory, disk, identity.

The master uses these health reports to stop sending work to a Pi that is throttling, swapping
or out of disk, and the identity (board, distro, platform and ABI tags) to decide which builds
the Pi can serve. Every reader takes the filesystem root it reads from, so tests can point it at
a fake ``/proc`` and ``/sys``, and none of them raises: a missing or garbled file gives None or
zeros, because a health report with a hole in it beats no report at all.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import struct
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from packaging import tags

__all__ = [
    "abi_tag",
    "board",
    "cpu_temperature",
    "disk",
    "distro",
    "load_average",
    "memory",
    "parse_meminfo",
    "parse_os_release",
    "parse_vcgencmd_temp",
    "platform_tag",
    "snapshot",
]

ROOT = Path("/")
#: Seconds ``vcgencmd`` may take (it talks to the VideoCore firmware, which can hang).
VCGENCMD_TIMEOUT = 5.0
_MAX_READ = 1024 * 1024  # no file we parse is anywhere near this; /proc can be endless

_VCGENCMD_TEMP = re.compile(r"temp=\s*(-?\d+(?:\.\d+)?)\s*'?C", re.IGNORECASE)
_MEMINFO_LINE = re.compile(r"^(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+(\w+))?\s*$")
_UNITS = {None: 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_CODENAME_IN_VERSION = re.compile(r"\(([A-Za-z]+)\)")


def _read_text(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(_MAX_READ).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Temperature and load
# --------------------------------------------------------------------------------------------


def parse_vcgencmd_temp(output: str) -> float | None:
    """Degrees Celsius from ``vcgencmd measure_temp`` output (``temp=48.3'C``), else None."""
    match = _VCGENCMD_TEMP.search(output or "")
    return float(match.group(1)) if match else None


def _thermal_zone_max(root: Path) -> float | None:
    readings: list[float] = []
    try:
        zones = sorted((root / "sys/class/thermal").glob("thermal_zone*/temp"))
    except OSError:
        return None
    for zone in zones:
        text = _read_text(zone)
        if text is None:
            continue
        try:
            readings.append(int(text.strip()) / 1000)  # millidegrees Celsius
        except ValueError:
            continue
    return max(readings) if readings else None


def _vcgencmd_temp() -> float | None:
    command = shutil.which("vcgencmd")
    if command is None:
        return None
    try:
        done = subprocess.run(
            [command, "measure_temp"],
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=VCGENCMD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_vcgencmd_temp(done.stdout) if done.returncode == 0 else None


def cpu_temperature(root: Path = ROOT) -> float | None:
    """The hottest thermal zone in degrees Celsius, so the master can back off a throttling Pi.

    Falls back to ``vcgencmd measure_temp`` (found on ``PATH``) where the kernel exposes no
    thermal zone; None when neither gives a reading.
    """
    reading = _thermal_zone_max(root)
    return reading if reading is not None else _vcgencmd_temp()


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages, or zeros where the OS cannot say."""
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return (0.0, 0.0, 0.0)
    return (float(one), float(five), float(fifteen))


# --------------------------------------------------------------------------------------------
# Memory and disk
# --------------------------------------------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as {field: bytes}; lines that do not parse are skipped."""
    values: dict[str, int] = {}
    for line in (text or "").splitlines():
        match = _MEMINFO_LINE.match(line.strip())
        if not match:
            continue
        unit = match.group(3).lower() if match.group(3) else None
        if unit not in _UNITS:
            continue
        values[match.group(1)] = int(match.group(2)) * _UNITS[unit]
    return values


def memory(root: Path = ROOT) -> dict[str, int]:
    """Total and available RAM and swap in bytes (0 where unknown): a swapping Pi builds slowly.

    Kernels before 3.14 have no MemAvailable; free + buffers + page cache approximates it.
    """
    info = parse_meminfo(_read_text(root / "proc/meminfo") or "")
    available = info.get("MemAvailable")
    if available is None:
        available = info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0)
    return {
        "total": info.get("MemTotal", 0),
        "available": available,
        "swap_total": info.get("SwapTotal", 0),
        "swap_free": info.get("SwapFree", 0),
    }


def disk(path: Path) -> dict[str, int]:
    """Total and free bytes of the filesystem holding ``path`` (zeros if it cannot be read)."""
    try:
        usage = shutil.disk_usage(path)
    except (OSError, ValueError):
        return {"total": 0, "free": 0}
    return {"total": int(usage.total), "free": int(usage.free)}


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------


def board(root: Path = ROOT) -> str | None:
    """The device-tree model, e.g. "Raspberry Pi 4 Model B Rev 1.4"; None off a Pi."""
    for relative in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = _read_text(root / relative)
        if text is None:
            continue
        model = text.replace("\x00", "").strip()
        if model:
            return model
    return None


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) assignments as a dict, with shell quoting and escapes undone."""
    values: dict[str, str] = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        try:
            words = shlex.split(raw, comments=False, posix=True)
        except ValueError:  # unbalanced quotes
            words = [raw.strip("'\"")]
        values[key] = " ".join(words)
    return values


def distro(root: Path = ROOT) -> dict[str, str | None]:
    """ID, VERSION_ID and VERSION_CODENAME from os-release (None where missing).

    Old Raspbian releases lack VERSION_CODENAME; it is then taken from ``VERSION="10 (buster)"``.
    """
    text = _read_text(root / "etc/os-release")
    if text is None:
        text = _read_text(root / "usr/lib/os-release")
    values = parse_os_release(text or "")
    codename = values.get("VERSION_CODENAME") or None
    if codename is None:
        match = _CODENAME_IN_VERSION.search(values.get("VERSION", ""))
        codename = match.group(1).lower() if match else None
    return {
        "ID": values.get("ID") or None,
        "VERSION_ID": values.get("VERSION_ID") or None,
        "VERSION_CODENAME": codename,
    }


def platform_tag(platform: str | None = None, is_32bit: bool | None = None) -> str:
    """The platform tag wheels built here carry, e.g. "linux_armv7l" or "linux_aarch64".

    Mirrors setuptools' ``bdist_wheel``: 32-bit Raspberry Pi OS on a 64-bit kernel reports
    ``aarch64`` from uname, but its wheels are ``linux_armv7l``. The arguments are for tests.
    """
    plat = platform if platform is not None else sysconfig.get_platform()
    if is_32bit is None:
        is_32bit = struct.calcsize("P") == 4
    if is_32bit:
        plat = {"linux-x86_64": "linux-i686", "linux-aarch64": "linux-armv7l"}.get(plat, plat)
    return plat.replace("-", "_").replace(".", "_")


def abi_tag() -> str:
    """This interpreter's ABI tag, e.g. "cp311": which ``cpXY`` wheels this Pi can build."""
    try:
        return next(iter(tags.sys_tags())).abi
    except StopIteration:  # pragma: no cover - packaging always yields at least one tag
        return "none"


# --------------------------------------------------------------------------------------------
# The health report
# --------------------------------------------------------------------------------------------


def snapshot(work_dir: Path, root: Path = ROOT) -> dict[str, Any]:
    """One JSON-ready health report: temperature, load, memory and the work directory's disk."""
    return {
        "cpu_temperature": cpu_temperature(root),
        "load_average": list(load_average()),
        "memory": memory(root),
        "disk": disk(work_dir),
    }
