"""kill -9 of every master service in turn, at random points of a replay with builds running,
each restarted: the system ends where an uninterrupted run ends.

One run kills all seven services (in a random order, at random moments) while upstream keeps
publishing history rows and new releases, two real builders build them and one built release is
removed upstream: cheaper than seven runs, and the kills land on each other's recoveries too.
The seed is printed; ``PIW_CHAOS_SEED=<seed>`` replays the same order and moments."""

import time

import pytest
import requests

from tests.chaos.conftest import (
    SERVICES,
    assert_builds_and_files_agree,
    catalog,
    expected_catalog,
    held_and_serial,
    temp_files,
    unbuildable_history,
)
from tests.conftest import wait_for
from tests.e2e.conftest import files_of, release, wheel

pytestmark = pytest.mark.slow

HISTORY = 3000  # rows of synthetic history, fed in pieces while services die
BUILDABLE = [f"chaos{i}" for i in range(6)]  # pure packages: real sdists, real builds


class Upstream:
    """What upstream publishes, in order: serials are given at publication (they only grow)."""

    def __init__(self, system):
        self.system, self.rows, self.serial = system, [], 0

    def rows_of(self, rows):
        out = []
        for row in rows:
            self.serial += 1
            out.append(dict(row, serial=self.serial))
        self.rows += out
        return out

    def publish(self, rows):
        if rows:
            self.system.append(self.rows_of(rows))


def test_kill_9_each_service_at_random_points(system, db, processes, rpc, chaos_rng):
    rng = chaos_rng
    history = unbuildable_history(HISTORY, seed=rng.randrange(1000))
    pieces = [history[i:i + HISTORY // 8] for i in range(0, HISTORY, HISTORY // 8)]
    # release() times rows by the serial it is given: all within the last hour
    releases = [release(name, "1.0", 1000 + 10 * i, "pure") for i, name in
                enumerate(BUILDABLE)]
    removal = {"name": BUILDABLE[1], "version": "1.0", "timestamp": int(time.time()) - 60,
               "action": "remove release"}  # of a release that is (being) built
    last_piece = pieces.pop()  # published while the index dies at a crash point
    upstream = Upstream(system)
    system.start(upstream.rows_of(pieces.pop(0) + releases.pop(0)), without=SERVICES,
                 PIW_HOLD_SECONDS="2", PIW_INDEX_ROOT_INTERVAL="1", PIW_INDEX_TEMP_MAX_AGE="1")
    for name in SERVICES:
        system.service(name)
    system.builder("pi1")
    system.builder("pi2")
    # a built wheel, to download while stats is down
    wait_for(lambda: wheel(BUILDABLE[0], "1.0") in files_of(db, BUILDABLE[0]), 120,
             what="the first build")
    download = f"{system.web}/simple/{BUILDABLE[0]}/{wheel(BUILDABLE[0], '1.0')}"
    downloads_before = rpc.stats.package_downloads(BUILDABLE[0])["all"]
    downloaded = 0

    order = list(SERVICES)
    rng.shuffle(order)
    kills = []
    started = time.monotonic()
    for turn, name in enumerate(order):
        # upstream keeps publishing while the services die
        upstream.publish((pieces.pop(0) if pieces else []) + (releases.pop(0) if releases
                                                               else []))
        if turn == 3:
            upstream.publish([removal])
        pause, down = rng.uniform(0.3, 2.0), rng.uniform(0.0, 1.5)
        time.sleep(pause)
        kills.append((round(time.monotonic() - started, 2), name, round(down, 2)))
        print(f"chaos: kill -9 {name} at +{kills[-1][0]} s, down {down:.2f} s")
        processes.kill9(name)
        if name == "stats":  # downloads while stats is dead reach it once it is back
            for _ in range(3):  # (web may be starting again itself)
                wait_for(lambda: requests.get(download, timeout=5).status_code == 200, 30,
                         what="web to serve the wheel")
                downloaded += 1
            down = max(down, 1.5)  # web's batch leaves within its 1 s flush interval
        time.sleep(down)
        processes.restart(name)
    upstream.publish([e for piece in pieces for e in piece] + [e for r in releases for e in r])
    print(f"chaos: kills (at s, service, down s): {kills}")
    # and one kill at the worst moment of a page write, between its temp file and the rename
    processes.kill9("index")
    crashing = system.service("index", PIW_CRASH_AT="tree.temp_written")
    upstream.publish(last_piece)
    assert crashing.wait(60) == -9
    assert temp_files(system.www), "the crash point left no temp file"
    processes.restart("index")  # which sweeps it

    last = upstream.serial
    wait_for(lambda: tuple(held_and_serial(db)) == (0, last), 120, interval=0.5,
             what="the reorderer to apply every row",
             describe=lambda: tuple(held_and_serial(db)))
    assert catalog(db) == expected_catalog(upstream.rows)
    alive = [p for p in BUILDABLE if p != BUILDABLE[1]]
    system.settled(*alive)
    assert {p: {t["state"] for t in system.targets(p)} for p in alive} == {
        p: {"built"} for p in alive}
    wait_for(lambda: files_of(db, BUILDABLE[1]) == {}, 30, what="the removed release's files")
    recorded = assert_builds_and_files_agree(system, db)
    assert {b["package"] for b in recorded} == set(alive)
    assert {b["status"] for b in recorded} == {"success"}
    for package in alive:  # every page served, with its wheel
        wait_for(lambda p=package: wheel(p, "1.0") in requests.get(
            f"{system.web}/simple/{p}/", timeout=5).text, 20, what=f"{package}'s page")
    wait_for(lambda: rpc.stats.package_downloads(BUILDABLE[0])["all"]
             >= downloads_before + downloaded, 30, what="downloads made while stats was down")
