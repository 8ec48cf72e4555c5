"""Synthetic, realistic reports for the page, monitor and screenshot tests (deterministic:
a seeded generator, fixed times)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from piw_services.stats.model import (
    BuilderStatus,
    Count,
    MasterStatus,
    Reading,
    Series,
    StatsReport,
    StatusReport,
)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script> & \'q\' $x$'
PACKAGES = ("numpy", "pillow", "gpiozero", "rpi-gpio", "opencv-python-headless", "cryptography",
            "pandas", "scipy", "lxml", "psutil", "pyyaml", "grpcio", "matplotlib", "smbus2",
            "spidev", "cffi", "bcrypt", "pynacl", "aiohttp", "uvloop")


def stats_report(days: int = 30, *, hostile: bool = False) -> StatsReport:
    rnd = random.Random(6)
    dates = [NOW.date() - timedelta(days=days - 1 - i) for i in range(days)]
    per_day = tuple((d, int(40_000 + 8_000 * math.sin(i / 3) + rnd.randint(0, 6000)))
                    for i, d in enumerate(dates))
    names = list(PACKAGES) + ([HOSTILE] if hostile else [])
    top = tuple(Count(n, int(300_000 / (i + 1))) for i, n in enumerate(names))
    shares = {"3.11": 0.55, "3.9": 0.2, "3.13": 0.15, "3.7": 0.06, "2.7": 0.04}
    if hostile:
        shares[HOSTILE] = 0.01

    def series(share: dict[str, float]) -> tuple[Series, ...]:
        return tuple(Series(k, tuple((d, int(n * v)) for d, n in per_day))
                     for k, v in share.items())

    return StatsReport(
        generated=NOW,
        days=days,
        downloads_total=52_345_678,
        downloads_window=sum(n for _, n in per_day),
        downloads_per_day=per_day,
        top_packages=top,
        top_packages_all_time=tuple(reversed(top[-5:])) + top[:-5],
        searches_without_wheels=tuple(Count(n, 500 - 20 * i) for i, n in enumerate(
            ["tensorflow", "torch", "onnxruntime", "ray"] + ([HOSTILE] if hostile else []))),
        python_versions=series(shares),
        distros=series({"Raspbian 12": 0.5, "Debian 13": 0.3, "Raspbian 11": 0.15,
                        "Ubuntu 24.04": 0.05}),
        architectures=(Count("armv7l", 700_000), Count("aarch64", 500_000),
                       Count("armv6l", 80_000)) + ((Count(HOSTILE, 3),) if hostile else ()),
        installers=(Count("pip", 1_100_000), Count("uv", 170_000), Count("unknown", 10_000))
        + ((Count(HOSTILE, 1),) if hostile else ()),
    )


def empty_stats_report() -> StatsReport:
    return StatsReport(NOW, 30, 0, 0, (), (), (), (), (), (), (), ())


def _readings(rnd: random.Random, hours: float, every: float, *, temp: bool = True,
              until: datetime = NOW) -> tuple[Reading, ...]:
    count = int(hours * 3600 / every)
    out = []
    for i in range(count):
        at = until - timedelta(seconds=every * (count - 1 - i))
        busy = 0.5 + 0.5 * math.sin(i / 40)
        out.append(Reading(
            at=at,
            cpu_temperature=round(45 + 25 * busy + rnd.random() * 2, 1) if temp else None,
            load1=round(0.2 + 3.6 * busy + rnd.random() * 0.3, 2),
            memory_used=round(0.3 + 0.4 * busy, 3),
            swap_used=0.01,
            disk_used=round(0.4 + 0.1 * i / count, 3),
        ))
    return tuple(out)


def status_report(builders: int = 8, *, hostile: bool = False,
                  hours: float = 6, every: float = 60) -> StatusReport:
    rnd = random.Random(7)
    out = []
    for i in range(builders):
        silent = i == builders - 1
        label = HOSTILE if hostile and i == 0 else f"pi{i + 1:02d}"
        out.append(BuilderStatus(
            id=i + 1, label=label, abi=("cp311", "cp313", "cp39")[i % 3],
            platform="linux_aarch64" if i % 2 else "linux_armv7l",
            board=HOSTILE if hostile and i == 1 else ("Raspberry Pi 4 Model B Rev 1.4",
                                                     "Raspberry Pi 5 Model B Rev 1.0")[i % 2],
            state="alive",
            silent_for=2700.0 if silent else 3.0 + i,
            job=None if silent or i % 4 == 3 else
            (HOSTILE + " 1.0" if hostile and i == 0 else f"{PACKAGES[i]} 1.{i}.0"),
            job_elapsed=None if silent or i % 4 == 3 else 35.0 + 140 * i,
            readings=_readings(rnd, hours, every, temp=i != 2,
                               until=NOW - timedelta(seconds=2700 if silent else 3)),
        ))
    master = MasterStatus(
        readings=_readings(rnd, hours, every, temp=False),
        queues=(Count("cp311", 1234), Count("cp313", 56), Count("cp39", 0))
        + ((Count(HOSTILE, 1),) if hostile else ()),
        behind_upstream=42,
        builds_last_hour=311,
        failures_last_hour=17,
    )
    recent = tuple((NOW - timedelta(minutes=3 * i), PACKAGES[i % len(PACKAGES)], f"2.{i}",
                    "cp311", "built" if i % 5 else "failed") for i in range(20))
    if hostile:
        recent = ((NOW, HOSTILE, HOSTILE, HOSTILE, HOSTILE),) + recent
    return StatusReport(generated=NOW, silence_limit=600.0, builders=tuple(out),
                        master=master, recent_builds=recent)


def empty_status_report() -> StatusReport:
    return StatusReport(NOW, 600.0, (), MasterStatus((), (), None, 0, 0), ())
