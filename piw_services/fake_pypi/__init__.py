"""piw-fake-pypi: a stand-in for PyPI, speaking its real protocols, for tests and demos.

See :mod:`piw_services.fake_pypi.server` for the endpoints and
:mod:`piw_services.fake_pypi.log` for the event-log format.
"""

from .log import Event, EventLog, EventLogError, write_jsonl
from .sdists import make_sdist, make_wheel
from .server import FakePyPI, main
from .state import PyPIState, apply_events

__all__ = [
    "Event",
    "EventLog",
    "EventLogError",
    "FakePyPI",
    "PyPIState",
    "apply_events",
    "main",
    "make_sdist",
    "make_wheel",
    "write_jsonl",
]
