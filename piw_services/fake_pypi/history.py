"""A synthetic but realistic PyPI history, for replays in tests and benchmarks.

Shaped like the real changelog: many packages, releases that come with their files, bursts in
one second, stretches whose timestamps run backwards by hours to weeks (as in PyPI's early
years), yanks, file and release removals, whole-project deletions, names re-registered under
another spelling, release and project quarantines (and their clearing), and every role,
invitation and team action warehouse writes today, which must be ignored (warehouse: manage/
views/__init__.py, manage/views/teams.py, manage/views/organizations.py, accounts/views.py,
admin/views/projects.py, packaging/services.py, utils/project.py; a username with non-ASCII
letters too, which warehouse sends as character references). Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

START = 1_100_000_000  # 2004-11
_SYLLABLES = [
    "py",
    "lib",
    "net",
    "data",
    "web",
    "pi",
    "gpio",
    "io",
    "sql",
    "json",
    "http",
    "tool",
    "kit",
    "core",
    "ext",
    "fast",
    "tiny",
    "zen",
    "chai",
    "mock",
    "geo",
]
#: Journal actions of roles, invitations and teams, as warehouse writes them (2026).
PEOPLE_ACTIONS = [
    "add Owner someone",
    "remove Owner someone",
    "add Maintainer x",
    "docupdate",
    "invite Owner someone",
    "revoke_invite Maintainer someone",
    "accepted Owner someone",
    "change Owner someone to Maintainer",
    "add Maintainer Release Team",  # a team of an organisation (manage/views/__init__.py)
    "change Maintainer Release Team to Owner",  # manage/views/teams.py
    "remove Owner Release Team",
    "add Owner j\u00fcrgen",
]


def _name(rng: random.Random, i: int) -> str:
    parts = rng.sample(_SYLLABLES, rng.randint(1, 3))
    sep = rng.choice(["", "-", "_", "."])
    return sep.join(parts) + sep + str(i) if sep else "".join(parts) + str(i)


def _respell(rng: random.Random, name: str) -> str:
    """Another spelling of *name* with the same PEP 503 canonical form."""
    out = "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)
    return out.replace("-", rng.choice(["-", "_", "."]))


def synthetic_history(n: int, seed: int = 1, dense: bool = False) -> Iterator[dict[str, Any]]:
    """Yield *n* changelog events (dicts with name, version, timestamp, action, serial).

    By default a new package comes every ~40 rows and a release with 1-3 files. ``dense``
    is as dense in packages as PyPI's whole history (~600,000 projects in ~5.5 M rows): a
    new package every ~9 rows, releases of 2-10 files, and legacy renames (``rename from
    <old>`` on the new name, as old PyPI wrote them) beside the removals.
    """
    rng = random.Random(seed)
    p_create, p_release = (0.44, 0.94) if dense else (0.06, 0.70)
    serial, t = 0, START
    live: list[list[Any]] = []  # [name, [versions], {version: [files]}]
    dead: list[str] = []
    shift, shift_left = 0, 0
    emitted = 0

    def emit(name: str, version: str | None, action: str) -> dict[str, Any]:
        nonlocal serial
        serial += 1
        return {
            "name": name,
            "version": version,
            "timestamp": t - shift,
            "action": action,
            "serial": serial,
        }

    while emitted < n:
        # time moves on, mostly in small steps, sometimes in bursts of one second
        if rng.random() < 0.7:
            t += int(rng.expovariate(1 / 20))
        if shift_left:
            shift_left -= 1
        elif rng.random() < 0.002:
            shift, shift_left = rng.randint(3600, 30 * 86400), rng.randint(50, 2000)
        else:
            shift = 0
        roll = rng.random()
        out: list[dict[str, Any]] = []
        if not live or roll < p_create:
            name = _name(rng, serial)
            if dense and rng.random() < 0.02:  # a legacy rename of a live package
                index = rng.randrange(len(live))
                old = live[index][0]
                live[index][0] = name
                out.append(emit(name, None, f"rename from {old}"))
            else:
                live.append([name, [], {}])
                out.append(emit(name, None, "create"))
        elif roll < p_release or len(live) < 5:
            pkg = rng.choice(live)
            name, versions, files = pkg
            version = f"{len(versions) // 10}.{len(versions) % 10}.{rng.randint(0, 3)}"
            if version in files:
                continue
            versions.append(version)
            stem = name.replace("-", "_").replace(".", "_").lower()
            files[version] = [f"{stem}-{version}.tar.gz"]
            out.append(emit(name, version, "new release"))
            out.append(emit(name, version, f"add source file {stem}-{version}.tar.gz"))
            abis = ["py3-none-any", "cp311-cp311-manylinux_2_17_x86_64"]
            if dense:
                abis = [f"cp3{minor}-cp3{minor}-{platform}" for minor in range(8, 13)
                        for platform in ("manylinux_2_17_x86_64", "win_amd64")]
            for abi in rng.sample(abis, rng.randint(1, 9) if dense else rng.randint(0, 2)):
                fn = f"{stem}-{version}-{abi}.whl"
                files[version].append(fn)
                out.append(emit(name, version, f"add {abi.split('-')[0]} file {fn}"))
        else:
            index = rng.randrange(len(live))
            pkg = live[index]
            if dense:  # the rest of the range, spread as it is by default
                roll = p_release + (roll - p_release) * (1 - 0.70) / (1 - p_release)
            name, versions, files = pkg
            if roll < 0.80 and versions:
                out.append(emit(name, rng.choice(versions), "yank release"))
            elif roll < 0.83 and versions:
                out.append(emit(name, rng.choice(versions), "unyank release"))
            elif roll < 0.87 and versions:
                version = rng.choice(versions)
                if files[version]:
                    fn = files[version].pop(rng.randrange(len(files[version])))
                    out.append(emit(name, version, f"remove file {fn}"))
            elif roll < 0.91 and versions:
                version = versions.pop(rng.randrange(len(versions)))
                files.pop(version)
                out.append(emit(name, version, rng.choice(["remove release", "remove"])))
            elif roll < 0.93:
                live[index] = live[-1]
                live.pop()
                dead.append(name)
                out.append(emit(name, None, rng.choice(["remove project", "remove"])))
            elif roll < 0.95 and dead:
                i = rng.randrange(len(dead))
                dead[i], dead[-1] = dead[-1], dead[i]
                old = dead.pop()
                new = _respell(rng, old)
                live.append([new, [], {}])
                out.append(emit(new, None, "create"))
            elif roll < 0.96 and versions:
                # warehouse/utils/project.py: a release taken down, mostly cleared later
                version = rng.choice(versions)
                out.append(emit(name, version, "release quarantined"))
                if rng.random() < 0.7:
                    out.append(emit(name, version, "release quarantine cleared"))
            elif roll < 0.962:
                out.append(emit(name, None, "project quarantined"))
                if rng.random() < 0.7:
                    out.append(emit(name, None, "project quarantine cleared"))
            else:
                out.append(emit(name, None, rng.choice(PEOPLE_ACTIONS)))
        for event in out:
            if emitted >= n:
                return
            emitted += 1
            yield event


def scenarios() -> list[str]:
    """The names of the scenarios packaged with piw (``demo``)."""
    folder = resources.files("piw_services.fake_pypi") / "scenarios"
    return sorted(f.name.removesuffix(".jsonl") for f in folder.iterdir()
                  if f.name.endswith(".jsonl"))


def write_scenario(path: Path, now: int, synthetic: int = 0, name: str = "demo") -> int:
    """Write the bundled scenario *name* (after *synthetic* generated events) with times
    rebased to *now*, so a system follows it as it would follow PyPI live; returns the
    newest readable serial."""
    bundled = resources.files("piw_services.fake_pypi") / "scenarios" / f"{name}.jsonl"
    events: list[dict[str, Any]] = []
    if synthetic:
        history = list(synthetic_history(synthetic, seed=1))
        shift = now - 30 * 86400 - max(e["timestamp"] for e in history)
        events = [{**e, "timestamp": e["timestamp"] + shift} for e in history]
    serial = len(events)
    last = serial
    for line in bundled.read_text().splitlines():
        event = json.loads(line)
        serial += 1
        ago = event.pop("ago")
        if "raw" in event:  # a deliberately malformed row: served as is
            event["serial"] = serial
        else:
            event.update(timestamp=now - ago, serial=serial)
            last = serial
        events.append(event)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return last
