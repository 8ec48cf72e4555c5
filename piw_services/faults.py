"""Crash points, for the tests that prove a crash half-way through a change is completed on
restart: with ``PIW_CRASH_AT=<name>`` in its environment, a process kills itself with SIGKILL
(as the OOM killer or a power cut would) when it reaches the point of that name. Unset (every
deployment), a crash point costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

ENV = "PIW_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
