"""A timer whose method says when it wants to run next, and that other workers can wake.

nameko's ``@timer`` fires on a fixed grid: work that becomes due between two ticks waits for
the next one (upstream's 1 s poll timer and the reorderer's 2 s release tick were most of a
release's latency, docs/performance.md). ``@scheduled(idle)`` runs its method, which returns
the seconds until it should run again (``None``: after *idle*); a failed run is tried again
after *idle*. A worker of the same service brings the next run forward with the
:class:`Wakeup` dependency (``self.wakeup("tick")``), e.g. when an RPC stored rows whose
release time is sooner than the sleeping timer's. Runs never overlap, as with ``@timer``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from eventlet import Timeout
from eventlet.event import Event
from nameko.extensions import DependencyProvider, Entrypoint

log = logging.getLogger(__name__)


class Scheduled(Entrypoint):
    def __init__(self, idle: float, **kwargs: Any) -> None:
        self.idle = idle
        self.due = 0.0  # time.monotonic() of the next run: the first comes at start
        self.alarm = Event()  # sent to wake the loop: stop, or a run brought forward
        self.stopping = False
        self.worker_complete = Event()
        self.next_in: float | None = None
        self.gt: Any = None
        super().__init__(**kwargs)

    def start(self) -> None:
        self.gt = self.container.spawn_managed_thread(self._run)

    def stop(self) -> None:
        self.stopping = True
        self._ring()
        self.gt.wait()

    def kill(self) -> None:
        self.gt.kill()

    def wake(self, delay: float = 0.0) -> None:
        """Run no later than *delay* seconds from now."""
        due = time.monotonic() + max(delay, 0.0)
        if due < self.due:
            self.due = due
            self._ring()

    def _ring(self) -> None:
        if not self.alarm.ready():
            self.alarm.send(True)

    def _consumers_ready(self) -> None:
        """Wait until the container's queue consumers (nameko's ``QueueConsumer``) consume.

        nameko starts a container's extensions together, so a first run at once could send an
        RPC before the reply queue is consumed, lose the reply and wait out the call's timeout
        (upstream's first poll: 60 s, one start in three)."""
        for extension in list(self.container.shared_extensions.values()):
            ready = getattr(extension, "_consumers_ready", None)
            if ready is not None:
                try:
                    ready.wait()
                except Exception:  # the consumer failed to start: the container dies of it
                    return

    def _run(self) -> None:
        self._consumers_ready()
        while not self.stopping:
            wait = self.due - time.monotonic()
            if wait > 0:
                with Timeout(wait, exception=False):
                    self.alarm.wait()
                if self.alarm.ready():
                    self.alarm.reset()
                continue  # woken (stop, or brought forward), or the time came: look again
            self.due = float("inf")  # a wake() during the run brings the next one forward
            self.next_in = None
            self.worker_complete = Event()
            self.container.spawn_worker(self, (), {}, handle_result=self._handle_result)
            self.worker_complete.wait()
            delay = self.idle if self.next_in is None else max(self.next_in, 0.0)
            self.due = min(self.due, time.monotonic() + delay)

    def _handle_result(self, worker_ctx: Any, result: Any, exc_info: Any) -> tuple[Any, Any]:
        if exc_info is None and isinstance(result, int | float):
            self.next_in = float(result)
        self.worker_complete.send()
        return result, exc_info


scheduled = Scheduled.decorator


class Wakeup(DependencyProvider):
    """``wakeup(method_name, delay=0)``: bring the service's ``@scheduled`` method forward."""

    def get_dependency(self, worker_ctx: Any) -> Callable[..., None]:
        return self.wake

    def wake(self, method_name: str, delay: float = 0.0) -> None:
        for entrypoint in self.container.entrypoints:
            if isinstance(entrypoint, Scheduled) and entrypoint.method_name == method_name:
                entrypoint.wake(delay)
