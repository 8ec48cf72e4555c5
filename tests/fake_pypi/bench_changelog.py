"""Timing check (not a test): changelog_since_serial for 50,000 of 200,000 rows.

Run: .venv/bin/python tests/fake_pypi/bench_changelog.py [TOTAL] [PAGE]
Prints the server-side cost (slice + join), the HTTP round trip for the raw
response bytes, and the end-to-end time through xmlrpc.client (which adds the
client's own XML parsing).
"""

from __future__ import annotations

import statistics
import sys
import time
import xmlrpc.client

import requests

from piw_services.fake_pypi import EventLog, FakePyPI

T0 = 1_700_000_000


def synthetic_events(total: int) -> list[dict]:
    """A PyPI-like mix of actions over a few thousand projects."""
    actions = ("create", "new release", "add source file", "add py3 file", "yank release")
    events = []
    for serial in range(1, total + 1):
        name = f"project-{serial % 5000}"
        version = f"1.{serial // 5000}"
        action = actions[serial % len(actions)]
        if action == "add source file":
            action += f" project_{serial % 5000}-{version}.tar.gz"
        elif action == "add py3 file":
            action += f" project_{serial % 5000}-{version}-py3-none-any.whl"
        events.append(
            {
                "name": name,
                "version": None if action == "create" else version,
                "timestamp": T0 + serial,
                "action": action,
                "serial": serial,
            }
        )
    return events


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    page = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    since = total - page - 1000  # a page from the middle-to-end of the log

    events = synthetic_events(total)
    start = time.perf_counter()
    log = EventLog(events)
    print(f"load {total:,} events (validate + marshal): {time.perf_counter() - start:.3f} s")

    with FakePyPI(log, page_size=page) as server:
        seconds, (chunks, rows) = timed(
            lambda: server._call("changelog_since_serial", (since,)), repeat=20
        )
        size = sum(len(chunk) for chunk in chunks)
        print(f"server side, {rows:,} rows ({size / 1e6:.1f} MB): {seconds * 1000:.1f} ms (median)")

        body = xmlrpc.client.dumps((since,), "changelog_since_serial").encode()
        session = requests.Session()
        seconds, response = timed(
            lambda: session.post(
                server.url + "/pypi", data=body, headers={"Content-Type": "text/xml"}
            ),
            repeat=10,
        )
        print(
            f"HTTP round trip, raw bytes ({len(response.content) / 1e6:.1f} MB): "
            f"{seconds * 1000:.1f} ms (median)"
        )

        proxy = xmlrpc.client.ServerProxy(server.url + "/pypi")
        seconds, result = timed(lambda: proxy.changelog_since_serial(since), repeat=3)
        print(
            f"xmlrpc.client end to end ({len(result):,} rows, incl. client parsing): "
            f"{seconds * 1000:.1f} ms (median)"
        )


if __name__ == "__main__":
    main()
