"""``@scheduled``: a method says when it runs next; another worker can bring it forward."""

import time

import eventlet
from nameko.rpc import RpcProxy, rpc
from nameko.testing.services import entrypoint_hook

from piw_services.scheduled import Wakeup, scheduled

RUNS: list[float] = []
NEXT: list[float | None] = []


class Service:
    name = "scheduled_test"
    wakeup = Wakeup()

    @scheduled(idle=0.5)
    def tick(self):
        RUNS.append(time.monotonic())
        if NEXT:
            value = NEXT.pop(0)
            if value == -1:
                raise RuntimeError("a failed run is tried again after idle")
            return value
        return 30.0  # sleep long unless woken

    @rpc
    def soon(self, delay):
        self.wakeup("tick", delay)


def test_runs_when_it_says_and_when_woken(container_factory, rabbit_config):
    RUNS.clear()
    NEXT[:] = [0.1, None, -1, 0.05]
    start = time.monotonic()
    container = container_factory(Service, rabbit_config)
    container.start()
    deadline = time.monotonic() + 10
    while len(RUNS) < 5 and time.monotonic() < deadline:
        eventlet.sleep(0.01)
    gaps = [b - a for a, b in zip([start] + RUNS, RUNS, strict=False)]
    assert len(RUNS) == 5
    assert gaps[0] < 0.3  # the first run comes at start
    assert 0.09 <= gaps[1] < 0.3  # 0.1 s as returned
    assert 0.45 <= gaps[2] < 0.8  # None: idle
    assert 0.45 <= gaps[3] < 0.8  # after a failure: idle
    assert 0.04 <= gaps[4] < 0.3  # 0.05 s as returned; then it sleeps 30 s
    eventlet.sleep(0.3)
    assert len(RUNS) == 5
    woken = time.monotonic()
    with entrypoint_hook(container, "soon") as soon:
        soon(0.2)
    while len(RUNS) < 6 and time.monotonic() < woken + 5:
        eventlet.sleep(0.01)
    assert len(RUNS) == 6 and 0.19 <= RUNS[5] - woken < 0.5
    container.stop()  # stops at once, although the next run is 30 s away
    assert time.monotonic() - woken < 5


CALLS: list[object] = []


class Echo:
    name = "scheduled_echo"

    @rpc
    def ping(self):
        return "pong"


class Caller:
    name = "scheduled_caller"
    echo = RpcProxy("scheduled_echo")

    @scheduled(idle=30)
    def tick(self):
        try:
            with eventlet.Timeout(10):
                CALLS.append(self.echo.ping())
        except eventlet.Timeout:
            CALLS.append("timed out")


def test_the_first_run_at_start_can_call_another_service(container_factory, rabbit_config):
    """nameko starts entrypoints before the RPC reply queue is consumed: a first run calling
    at once lost its reply and waited out the call's timeout (60 s for upstream's first poll)."""
    CALLS.clear()
    container_factory(Echo, rabbit_config).start()
    container_factory(Caller, rabbit_config).start()
    deadline = time.monotonic() + 15
    while not CALLS and time.monotonic() < deadline:
        eventlet.sleep(0.01)
    assert CALLS == ["pong"]
