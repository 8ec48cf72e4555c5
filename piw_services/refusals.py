"""Counting the builder messages the master refuses, per sender and per minute.

A builder that sends garbage in a loop must not fill the master's log (one line a message,
with a traceback, was what it got) nor keep it busy for ever. So the first refusal of a
sender in a minute is logged with its reason, the rest of that minute are only counted and
summed up in one line when the minute is over, and a sender refused ``limit`` times in one
minute is to be blocked (builder_queues does that). Pure bookkeeping: the caller passes the
time and logs what it is told to.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds a window of counting lasts.
WINDOW = 60.0


@dataclass
class _Window:
    start: float
    count: int = 0
    last: str = ""


@dataclass(frozen=True)
class Verdict:
    """What to do about one refusal: log it (the first of its sender's minute), and block
    the sender (its count has just reached the limit)."""

    log: bool
    block: bool


@dataclass(frozen=True)
class Summary:
    """A finished minute of a sender: how many refusals were not logged one by one."""

    sender: str
    unlogged: int
    last: str


class Refusals:
    """Refusal counts per sender (a RabbitMQ user name) over one-minute windows."""

    def __init__(self, limit: int, window: float = WINDOW) -> None:
        self.limit, self.window = limit, window
        self._windows: dict[str, _Window] = {}

    def refuse(self, sender: str, reason: str, now: float) -> tuple[Verdict, Summary | None]:
        """Count one refusal of *sender*; returns what to do, and the summary of the sender's
        previous window when this refusal starts a new one."""
        summary = None
        current = self._windows.get(sender)
        if current is not None and now - current.start >= self.window:
            summary = self._summary(sender, current)
            current = None
        if current is None:
            current = self._windows[sender] = _Window(start=now)
        current.count += 1
        current.last = reason
        return Verdict(log=current.count == 1, block=current.count == self.limit), summary

    def flush(self, now: float) -> list[Summary]:
        """The summaries of every window that is over (and forget them): called now and
        then, so a flood that stopped is still summed up."""
        done = [sender for sender, w in self._windows.items() if now - w.start >= self.window]
        summaries = [self._summary(sender, self._windows.pop(sender)) for sender in done]
        return [s for s in summaries if s is not None]

    @staticmethod
    def _summary(sender: str, window: _Window) -> Summary | None:
        return Summary(sender, window.count - 1, window.last) if window.count > 1 else None
