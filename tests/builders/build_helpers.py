"""Helpers shared by the build tests: watching a process group die, waiting for a marker file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def live_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are still running (zombies awaiting init excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def pid_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X")


def assert_group_gone(pgid: int, *pids: int) -> None:
    """The build's whole process group, and each of ``pids``, has exited."""
    assert live_members(pgid) == [], f"process group {pgid} still has live members"
    for pid in pids:
        assert not pid_running(pid), f"pid {pid} is still running"


def wait_for_json(path: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Poll for a JSON file a build writes (atomically) once it reaches a given point."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.05)
    return json.loads(path.read_text())
