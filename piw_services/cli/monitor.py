"""``piw-monitor``: the /status/ page live in a terminal, for operators over SSH, with
piwheels' monitor's builder control (its monitor/ and master/slave_driver.py: SLEEP, WAKE,
KILL, SKIP) on keys shown at the bottom of the screen, sent as the admin service's
``builder_control``.

It asks the stats service (``stats.status()`` over nameko RPC, a standalone
``ClusterRpcProxy`` with a timeout, so no eventlet) every ``--interval`` seconds and redraws
with curses from the standard library (no extra dependency for a full-screen table that only
needs text and one attribute). ``--once`` prints one plain frame and exits, for scripts.
The frame is made by :func:`format_status`, a pure function, so it is tested without a broker.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import warnings
from datetime import UTC, datetime
from typing import Any

from builders.commandline import command_parser, configure_logging
from piw_services.cli.admin import Failure, check_broker
from piw_services.config import CONFIG_HELP, load_config
from piw_services.stats.model import (
    BuilderStatus,
    Count,
    MasterStatus,
    Reading,
    StatusReport,
)
from piw_services.stats.pages import human_age, is_silent

#: Seconds to wait for the stats service's answer.
RPC_TIMEOUT = 10

#: The keys of the live screen: key -> (order, whether it is for the selected builder).
KEYS = {"p": ("pause", True), "r": ("resume", True), "k": ("kill", True),
        "s": ("skip", True), "P": ("pause", False), "R": ("resume", False)}
HELP = ("up/down select  p pause  r resume  k kill its build  s skip its build  "
        "P pause all  R resume all  q quit")


def order_for_key(key: str, selected: int | None) -> tuple[str, int | None] | None:
    """(order, builder id or None for every builder) that *key* asks for with the builder
    *selected* (an id, or None when there is none), or None when it asks for nothing."""
    order = KEYS.get(key)
    if order is None or order[1] and selected is None:
        return None
    return order[0], selected if order[1] else None


# -- the report from RPC (dataclasses.asdict, dates as ISO strings) ---------------------------
def _dt(value: str | datetime) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _reading(data: dict[str, Any]) -> Reading:
    return Reading(**{**data, "at": _dt(data["at"])})


def status_from_dict(data: dict[str, Any]) -> StatusReport:
    """The StatusReport that ``stats.status()`` sent as plain data."""
    master = data["master"]
    return StatusReport(
        generated=_dt(data["generated"]),
        silence_limit=float(data["silence_limit"]),
        builders=tuple(
            BuilderStatus(**{**b, "readings": tuple(_reading(r) for r in b["readings"])})
            for b in data["builders"]),
        master=MasterStatus(
            readings=tuple(_reading(r) for r in master["readings"]),
            queues=tuple(Count(**q) for q in master["queues"]),
            behind_upstream=master["behind_upstream"],
            builds_last_hour=master["builds_last_hour"],
            failures_last_hour=master["failures_last_hour"],
        ),
        recent_builds=tuple((_dt(b[0]), *map(str, b[1:5])) for b in data.get("recent_builds")
                            or ()),
    )


# -- the frame ---------------------------------------------------------------------------------
def _plain(value: object) -> str:
    """A value as terminal-safe text: control characters (an escape sequence in a builder's
    label or a package name would drive the terminal) become "?"."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def format_status(report: StatusReport, width: int) -> list[str]:
    """One frame of the monitor: lines no wider than *width* (at least 40 is assumed)."""
    width = max(width, 40)
    m = report.master
    last = m.readings[-1] if m.readings else None
    when = report.generated.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    behind = "unknown" if m.behind_upstream is None else f"{m.behind_upstream:,}"
    lines = [
        f"piw status at {when}",
        f"behind upstream: {behind}   builds last hour: {m.builds_last_hour:,}   "
        f"failures: {m.failures_last_hour:,}",
        "queues: " + ("  ".join(f"{_plain(q.label)} {q.count:,}" for q in m.queues)
                      or "none"),
        "master: " + (f"load {_num(last.load1, '{:.2f}')}  memory "
                      f"{_num(last.memory_used, '{:.0%}')}  disk {_num(last.disk_used, '{:.0%}')}"
                      if last else "no readings yet"),
        "",
    ]
    silent = [b for b in report.builders if is_silent(b, report.silence_limit)]
    lines.append(f"BUILDERS ({len(report.builders)}, {len(silent)} silent)")
    if report.builders:
        label_w = min(16, max(5, *(len(_plain(b.label)) for b in report.builders)))
        target_w = min(19, max(6, *(len(_plain(b.abi)) for b in report.builders)))
        fixed = label_w + 1 + target_w + 1 + 14 + 1 + 10 + 1 + 6 + 1 + 5 + 1
        job_w = max(8, width - fixed)
        lines.append(f"{'LABEL':<{label_w}} {'TARGET':<{target_w}} {'STATE':<14} "
                     f"{'JOB':<{job_w}} "
                     f"{'FOR':<10} {'CPU':>6} {'LOAD':>5}")
        for b in report.builders:
            r = b.readings[-1] if b.readings else None
            state = (f"SILENT {human_age(b.silent_for)}" if is_silent(b, report.silence_limit)
                     else "paused" if b.paused else _plain(b.state))
            temp = _num(r.cpu_temperature if r else None, "{:.0f}°C")
            load = _num(r.load1 if r else None, "{:.2f}")
            lines.append(
                f"{_fit(_plain(b.label), label_w):<{label_w}} "
                f"{_fit(_plain(b.abi), target_w):<{target_w}} "
                f"{_fit(state, 14):<14} {_fit(_plain(b.job) or 'idle', job_w):<{job_w}} "
                f"{_fit(human_age(b.job_elapsed), 10):<10} {temp:>6} {load:>5}")
    else:
        lines.append("no builder has said hello yet")
    lines += ["", "RECENT BUILDS"]
    for finished, package, version, abi, status in report.recent_builds:
        lines.append(f"{finished.astimezone(UTC):%H:%M:%S}  {_plain(status):<8} "
                     f"{_plain(abi):<6} {_plain(package)} {_plain(version)}")
    if not report.recent_builds:
        lines.append("none yet")
    return [_fit(line, width).rstrip() for line in lines]


# -- fetching and drawing ------------------------------------------------------------------------
def _errors() -> tuple[type[BaseException], ...]:
    with warnings.catch_warnings():  # nameko imports eventlet, which warns of itself
        warnings.simplefilter("ignore")
        from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
    return RemoteError, RpcTimeout, UnknownService


def _fetch(rpc: Any) -> StatusReport:
    """stats.status() as a StatusReport, or Failure with what went wrong."""
    remote_error, rpc_timeout, unknown_service = _errors()
    try:
        return status_from_dict(rpc.stats.status())
    except rpc_timeout:
        raise Failure(f"no answer from the stats service within {RPC_TIMEOUT} s: is "
                      "piw-master running?") from None
    except unknown_service:
        raise Failure("the stats service is not running: start piw-master") from None
    except remote_error as exc:
        raise Failure(f"the stats service failed: {exc.exc_type}: {exc.value}") from None


def _order(rpc: Any, order: str, builder: int | None, reason: str | None) -> str:
    """Send an operator's order through the admin service; what to show of its answer."""
    remote_error, rpc_timeout, unknown_service = _errors()
    try:
        done = rpc.admin.builder_control(order, builder, reason)
    except rpc_timeout:
        return f"no answer from the admin service within {RPC_TIMEOUT} s"
    except unknown_service:
        return "the admin service is not running"
    except remote_error as exc:
        return f"refused: {exc.value}"
    missed = done.get("undelivered") or {}
    return done["summary"] + (f" (not delivered to builders {', '.join(missed)})"
                              if missed else "")


def _live(rpc: Any, interval: float) -> None:
    import curses

    def ask(screen: Any, prompt: str) -> str:
        height, width = screen.getmaxyx()
        screen.move(height - 1, 0)
        screen.clrtoeol()
        screen.addnstr(height - 1, 0, prompt, width - 1, curses.A_BOLD)
        curses.echo()
        screen.timeout(-1)
        try:
            return screen.getstr(height - 1, min(len(prompt), width - 2), 200).decode(
                errors="replace").strip()
        finally:
            curses.noecho()
            screen.timeout(200)

    def loop(screen: Any) -> None:
        curses.curs_set(0)
        screen.timeout(200)
        next_at = 0.0
        lines: list[str] = []
        builders: list[BuilderStatus] = []
        selected, said = 0, ""
        while True:
            if time.monotonic() >= next_at:
                height, width = screen.getmaxyx()
                try:
                    report = _fetch(rpc)
                    builders = list(report.builders)
                    lines = format_status(report, width - 1)
                except Failure as exc:
                    lines = [f"piw-monitor: {exc}", "(retrying; q quits)"] + lines[2:]
                selected = min(selected, max(len(builders) - 1, 0))
                first = next((y + 2 for y, line in enumerate(lines)
                              if line.startswith("BUILDERS (")), None)
                screen.erase()
                for y, line in enumerate(lines[: height - 2]):
                    attr = curses.A_BOLD if y == 0 or line.isupper() else curses.A_NORMAL
                    if "SILENT" in line:
                        attr = curses.A_REVERSE
                    if builders and first is not None and y == first + selected:
                        attr |= curses.A_STANDOUT
                    screen.addnstr(y, 0, line, width - 1, attr)
                screen.addnstr(height - 2, 0, said or f"every {interval:g} s", width - 1)
                screen.addnstr(height - 1, 0, HELP, width - 1, curses.A_DIM)
                screen.refresh()
                next_at = time.monotonic() + interval
            key = screen.getch()
            if key in (ord("q"), ord("Q"), 27):
                return
            if key in (curses.KEY_UP, curses.KEY_DOWN):
                step = -1 if key == curses.KEY_UP else 1
                selected = max(0, min(len(builders) - 1, selected + step))
                next_at = 0.0
            elif key == curses.KEY_RESIZE:
                next_at = 0.0
            elif 0 <= key < 256:
                asked = order_for_key(chr(key), builders[selected].id if builders else None)
                if asked is not None:
                    reason = ask(screen, "skip: the reason? ") if asked[0] == "skip" else None
                    said = ("skip cancelled: no reason given" if reason == "" else
                            _order(rpc, *asked, reason))
                    next_at = 0.0

    curses.wrapper(loop)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``piw-monitor``."""
    parser = command_parser("piw-monitor", "Show piw's builders, queues and recent builds "
                            "live, and pause, resume, kill or skip a builder's build ("
                            + HELP + ").", config=CONFIG_HELP + "; AMQP_URI is read from it")
    parser.add_argument("-i", "--interval", type=float, default=2.0, metavar="SECONDS",
                        help="seconds between refreshes (default 2)")
    parser.add_argument("--once", action="store_true",
                        help="print one plain-text frame and exit")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    configure_logging(args, default=logging.WARNING)
    config = load_config(args.config)
    try:
        check_broker(config["AMQP_URI"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from nameko.standalone.rpc import ClusterRpcProxy
        with ClusterRpcProxy(config, timeout=RPC_TIMEOUT) as rpc:
            if args.once:
                width = shutil.get_terminal_size((100, 24)).columns
                print("\n".join(format_status(_fetch(rpc), width)))
            else:
                _live(rpc, args.interval)
    except Failure as exc:
        print(f"piw-monitor: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
