"""The poll loop, free of nameko: what to fetch, when to back off, when to poll again.

The reorderer owns our place in the changelog; the poller asks it where we are at the start of
every poll, so a poller that dies (or two that run at once) can never lose or skip rows.
Pages are pipelined: the next page is fetched while the reorderer stores the previous one.

When to poll: again at once while pages come back full, ``min_interval`` after a poll that
brought rows (activity comes in runs), then twice as long after each empty poll up to
``interval``. When the reorderer holds rows, it says when the first is due; the poller asks
it to release them then and reads their Requires-Python from the JSON API at once, since
build_dispatch sends no job before that is known.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from piw_services.upstream_client import Refused, UpstreamClient, UpstreamError, backoff_delay

log = logging.getLogger(__name__)


#: Longest Requires-Python and yank reason taken from upstream's JSON API.
MAX_REQUIRES_PYTHON = 1000
MAX_REASON = 1000


def _text(value: Any, limit: int, cut: bool = False) -> str | None:
    """A text field of upstream's JSON as we store it: a string of printable characters
    (PostgreSQL refuses NUL; pages and logs want no control characters), at most *limit*
    long (cut there, or with *cut* False one character longer: the caller drops it), or
    None. Anything else (a number, a list, an object) is None: one odd answer must not stop
    the enrichment of every version after it."""
    if not isinstance(value, str):
        return None
    value = "".join(c for c in value[:limit + 1] if c.isprintable()).strip()
    return (value[:limit] if cut else value) or None


def page_top(rows: list[Any], default: int) -> int:
    """The highest usable serial in a page of raw rows (malformed rows included)."""
    serials = [r[4] for r in rows if isinstance(r, list | tuple) and len(r) == 5
               and isinstance(r[4], int) and not isinstance(r[4], bool)]
    return max(serials, default=default)


@dataclass
class Poller:
    client: UpstreamClient
    interval: float = 10.0  # the longest wait between polls (upstream quiet)
    min_interval: float = 1.0  # the wait after a poll that brought rows
    backoff_max: float = 300.0
    refused_retry: float = 900.0  # upstream refuses a call outright: try again this much later
    refused: str | None = None  # what upstream said when it last refused (None: it did not)
    failures: int = 0
    next_poll: float = 0.0
    last_error: str | None = None
    stuck_at: int | None = None
    enrich_days: float = 30.0
    depth: int = 2  # pages handed to the reorderer and not yet stored
    pages: int = 0
    rows: int = 0
    wait: float = 0.0  # the current wait between polls, from min_interval up to interval
    full_page: int = 0  # the longest page seen: one as long is full, more may wait upstream
    release_at: float | None = None  # when the reorderer's first held row is due
    enrich_at: float = 0.0  # when to look for versions needing upstream's details anyway
    clock: Callable[[], float] = field(default=time.monotonic)

    def due(self) -> bool:
        return self.clock() >= self.next_poll

    def enrich_due(self) -> bool:
        """Whether to look for versions needing upstream's details: new ones appeared, the
        last look found a full batch, or ``interval`` passed (back-offs end)."""
        return self.clock() >= self.enrich_at

    def release_due(self) -> bool:
        return self.release_at is not None and self.clock() >= self.release_at

    def next_in(self) -> float:
        """Seconds until the next poll or release."""
        at = self.next_poll if self.release_at is None else min(self.next_poll, self.release_at)
        return max(0.0, at - self.clock())

    def released(self, result: dict[str, Any]) -> None:
        """Take in what the reorderer said after storing rows or releasing held ones: when
        its first held row is due, and whether versions appeared (their details are due)."""
        release_in = result.get("release_in")
        self.release_at = None if release_in is None else self.clock() + release_in
        if result.get("applied"):
            self.enrich_at = 0.0

    def poll(self, last_serial: Callable[[], int],
             ingest: Callable[[list[Any], int], Callable[[], dict[str, Any]]]) -> int:
        """Fetch pages until upstream has nothing newer; returns the number of rows handed on.

        *ingest(rows, since)* starts storing one page, fetched after serial *since*, and
        returns a function that waits for the result. Up to ``depth`` pages are in flight:
        the reorderer parses the next page while PostgreSQL stores the one before, and we
        fetch the one after; it stores them in turn (``since`` tells it the order).
        """
        handed = 0
        in_flight: deque[Callable[[], dict[str, Any]]] = deque()
        try:
            serial = last_serial()
            while True:
                rows = self.client.changelog_since_serial(serial)
                if not rows:
                    break
                in_flight.append(ingest(rows, serial))
                handed += len(rows)
                self.pages += 1
                self.rows += len(rows)
                top = page_top(rows, serial)
                if top <= serial:  # only rows whose serial is unreadable: nothing to page on
                    if self.stuck_at != serial:
                        log.warning("upstream: %d rows after serial %d have no readable "
                                    "serial; they are recorded as malformed", len(rows), serial)
                        self.stuck_at = serial
                    break
                serial = top
                while len(in_flight) >= self.depth:
                    self.released(in_flight.popleft()())
                if len(rows) < self.full_page:  # a short page: upstream has no more now
                    break
                self.full_page = len(rows)
            while in_flight:
                self.released(in_flight.popleft()())
        except Exception as exc:  # upstream failed, or the reorderer did: back off either way
            self._failed(exc)
            while in_flight:
                try:
                    self.released(in_flight.popleft()())
                except Exception as late:
                    log.warning("storing a page failed too: %s", late)
            return handed
        self.failures, self.last_error, self.refused = 0, None, None
        self.wait = self.min_interval if handed else min(max(self.wait * 2, self.min_interval),
                                                         self.interval)
        self.next_poll = self.clock() + self.wait
        return handed

    def release(self, release: Callable[[], dict[str, Any]]) -> None:
        """Ask the reorderer to release its held rows that are due now."""
        self.release_at = None
        try:
            self.released(release())
        except Exception as exc:  # the reorderer releases them on its own timer too
            log.warning("releasing held rows failed: %s", exc)

    def enrich(self, needing: Callable[[int, int], list[list[str]]],
               store: Callable[[list[dict[str, Any]]], int], limit: int = 50) -> int:
        """Read Requires-Python, yank reasons and summaries, which the changelog does not
        carry, from the JSON API for up to *limit* versions (those with a build waiting
        first, whatever their age; then recent ones); returns how many were looked up. A
        version upstream answers 404 for, or nothing usable, is stored as a failed look-up
        (tried again after a back-off), never as done. Runs after a poll, so it is skipped
        only while upstream is being backed off from."""
        if self.enrich_days <= 0 or self.failures:
            return 0
        pairs = needing(limit, int(time.time() - self.enrich_days * 86400))
        # more may wait (a full batch), or new versions may appear (told by released()); a
        # failed look-up's back-off is over after a minute at the soonest
        self.enrich_at = self.clock() + (0.0 if len(pairs) >= limit else self.interval)
        infos = []
        try:
            for package, version in pairs:
                data = self.client.project_json(package, version)
                info = data.get("info") if data is not None else None
                if not isinstance(info, dict):
                    infos.append({"package": package, "version": version, "failed":
                                  "404 Not Found" if data is None else "no info in the answer"})
                    continue
                rp = _text(info.get("requires_python"), MAX_REQUIRES_PYTHON)
                infos.append({"package": package, "version": version,
                              # cut short, a specifier would say something else: dropped
                              "requires_python": rp if rp and len(rp) <= MAX_REQUIRES_PYTHON
                              else None,
                              "summary": _text(info.get("summary"), 512, cut=True),
                              "yanked_reason": _text(info.get("yanked_reason"), MAX_REASON,
                                                     cut=True)
                              if info.get("yanked") is True else None})
        except Exception as exc:
            self._failed(exc)
        if infos:
            store(infos)
        return len(infos)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, Refused):  # not a rate limit: said loudly, tried again slowly
            self.refused = str(exc)
            self.next_poll = self.clock() + self.refused_retry
            log.error("%s; trying again in %.0fs (failure %d in a row)", exc,
                      self.refused_retry, self.failures)
            return
        retry_after = exc.retry_after if isinstance(exc, UpstreamError) else None
        delay = backoff_delay(self.failures, retry_after, cap=self.backoff_max)
        self.next_poll = self.clock() + delay
        log.warning("upstream failed: %s; backing off %.1fs (failure %d in a row)",
                    self.last_error, delay, self.failures)

    def status(self) -> dict[str, Any]:
        return {"failures": self.failures, "last_error": self.last_error,
                "refused": self.refused, "pages": self.pages,
                "rows": self.rows, "next_poll_in": max(0.0, self.next_poll - self.clock())}
