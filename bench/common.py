"""Helpers shared by the benchmark scripts in bench/ (not part of piw itself)."""

import datetime
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MGMT = "http://guest:guest@127.0.0.1:15672/api"
LOGDIR = ROOT / "var" / "bench"


def say(msg: str) -> None:
    print(msg, flush=True)


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p99 of fewer than 100 values is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]


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


# --- servers shared by bench/serve and bench/pipinstall --------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_pypiserver() -> None:
    """Installs pypiserver with waitress (its first choice of WSGI server) and watchdog (its
    cached-dir backend) into this virtualenv if missing: for the benchmarks only."""
    if not (BIN / "pypi-server").exists() or subprocess.run(
            [str(BIN / "python"), "-c", "import waitress, watchdog"],
            capture_output=True).returncode:
        say("installing pypiserver for this benchmark: pip install -q 'pypiserver[cache]' "
            "waitress (not a piw dependency)")
        subprocess.run([str(BIN / "pip"), "install", "-q", "pypiserver[cache]", "waitress"],
                       check=True)


def web_env(www: Path, name: str = "piw_bench") -> dict:
    """The environment for our services on a fresh database and vhost called *name*, serving
    *www*."""
    from piw_services.cli.demo import fresh_database

    db_url = fresh_database(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
    return dict(os.environ, PIW_DB_URL=db_url, PIW_AMQP_URI=fresh_vhost(name), PIW_WWW=str(www),
                PIW_LOG_LEVEL="WARNING")


def start_web(procs: Procs, name: str, port: int) -> str:
    """Starts our web service (``piw-master --only web``) on *port*; returns its base URL."""
    procs.env["PIW_WEB_ADDRESS"] = f"127.0.0.1:{port}"
    procs.start(name, [str(BIN / "piw-master"), "--only", "web"])
    return f"http://127.0.0.1:{port}"


def start_pypiserver(procs: Procs, name: str, port: int, packages: Path) -> str:
    """Starts pypiserver (waitress, cached-dir backend, no fallback to PyPI) on the wheels in
    *packages*; returns its base URL."""
    procs.start(name, [
        str(BIN / "pypi-server"), "run", "-i", "127.0.0.1", "-p", str(port),
        "--server", "auto", "--backend", "cached-dir", "--disable-fallback", str(packages)])
    return f"http://127.0.0.1:{port}"


def wait_for(procs: Procs, name: str, url: str, seconds: float = 60) -> requests.Response:
    """GETs *url* until it answers 200 (the process *name* must stay up meanwhile)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            r = requests.get(url, timeout=5)
            if r.status_code == 200:
                return r
        except requests.ConnectionError:
            pass
        if procs.procs[name].poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start: see var/bench/{name}.log")
        time.sleep(0.2)
