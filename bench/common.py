"""Helpers shared by the benchmark scripts in bench/ (not part of piw itself)."""

import datetime
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MGMT = "http://guest:guest@127.0.0.1:15672/api"
LOGDIR = ROOT / "var" / "bench"


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def fresh_vhost(name: str) -> str:
    requests.delete(f"{MGMT}/vhosts/{name}", timeout=10)
    requests.put(f"{MGMT}/vhosts/{name}", timeout=10).raise_for_status()
    requests.put(f"{MGMT}/permissions/{name}/guest", json={"configure": ".*", "write": ".*",
                 "read": ".*"}, timeout=10).raise_for_status()
    return f"pyamqp://guest:guest@127.0.0.1:5672/{name}"


class Procs:
    """Named subprocesses logging to var/bench/<name>.log, all stopped by :meth:`stop`."""

    def __init__(self, env: dict) -> None:
        self.env, self.procs = env, {}
        LOGDIR.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        self.procs[name] = subprocess.Popen(
            cmd, env=self.env, stdout=open(LOGDIR / f"{name}.log", "w"),
            stderr=subprocess.STDOUT, cwd=ROOT)
        return self.procs[name]

    def stop(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def save_table(kind: str, title: str, rows: list[tuple[str, str]]) -> None:
    """Print a results table and save it as bench/results/<date>-<host>-<kind>.md."""
    table = "\n".join([f"{title}, {datetime.date.today()}, {platform.node()} "
                       f"({os.cpu_count()} cores)", "", "| measure | value |", "|---|---|"]
                      + [f"| {k} | {v} |" for k, v in rows])
    print("\n" + table)
    if os.environ.get("PIW_BENCH_SAVE") == "0":  # bench/run collects the table itself
        return
    out = ROOT / "bench" / "results" / f"{datetime.date.today()}-{platform.node()}-{kind}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    print(f"\nsaved to {out.relative_to(ROOT)}")
