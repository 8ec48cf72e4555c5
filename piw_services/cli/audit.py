"""``piw-audit``: check that the database, the file store and the index's pages agree.

Exit 0 when they do, 1 with one line per disagreement (``kind package: detail``, or a JSON
list with ``--json``), 2 when the audit cannot run (no database, no www tree).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from builders.commandline import command_parser, configure_logging
from piw_services.config import CONFIG_HELP, load_config

EXIT_CLEAN, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


class AuditError(Exception):
    """The audit cannot run; the text says why."""


def persisting(look: Callable[[], list], first: list, seconds: float, interval: float = 1.0,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> list:
    """The disagreements of *first* still found by every *look* over *seconds* (one look per
    *interval*): a live system is briefly inconsistent while events travel, and only what
    persists is a real problem. Stops early once nothing is left."""
    kept = set(first)
    deadline = clock() + seconds
    while kept and clock() < deadline:
        sleep(interval)
        kept &= set(look())
    return sorted(kept)


def wait_quiet(session_factory: Callable, seconds: float, progress: Callable[[str], None],
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> bool:
    """Wait up to *seconds* until every consumer has applied the whole outbox and the index
    has no dirty packages; True when it got there."""
    from piw_services.audit.checks import activity

    deadline = clock() + seconds
    said = 0.0
    while True:
        with session_factory() as s, s.begin():
            busy = activity(s)
        if not busy:
            return True
        now = clock()
        if now >= deadline:
            progress(f"piw-audit: still busy after {seconds:g} s ({'; '.join(busy)}); "
                     "auditing anyway")
            return False
        if now - said >= 2 or not said:
            progress(f"piw-audit: waiting for quiet: {'; '.join(busy)}")
            said = now
        sleep(min(0.5, max(deadline - now, 0.01)))


def run(db_url: str, www: Path, hashes: bool = False, wait: float = 0, settle: float = 0,
        progress: Callable[[str], None] = lambda _: None) -> tuple[list, int, int]:
    """Audit once (after waiting for quiet, settling if asked): (disagreements, files
    checked, packages checked). Raises AuditError when it cannot run."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import sessionmaker

    from piw_services.audit.checks import compare, gather
    from piw_services.db import BadDatabaseURL, db_message, make_engine

    if not www.is_dir():
        raise AuditError(f"the www tree {www} is not a directory")
    try:
        engine = make_engine(db_url, pool_size=1)
    except BadDatabaseURL as exc:
        raise AuditError(str(exc)) from None
    # one consistent view of the database per look
    sessions = sessionmaker(engine.execution_options(isolation_level="REPEATABLE READ"))
    counts = [0, 0]

    def look() -> list:
        with sessions() as s, s.begin():
            snap = gather(s, www, hashes)
        counts[:] = [len(snap.rows), len(snap.packages)]
        return compare(snap)

    try:
        with engine.connect():
            pass
        if wait > 0:
            wait_quiet(sessions, wait, progress)
        found = look()
        if found and settle > 0:
            found = persisting(look, found, settle)
    except SQLAlchemyError as exc:
        raise AuditError(db_message(exc, db_url)) from None
    except OSError as exc:
        raise AuditError(f"cannot read the www tree {www}: {exc}") from None
    finally:
        engine.dispose()
    return found, counts[0], counts[1]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("piw-audit", __doc__,
                            config=CONFIG_HELP + "; DB_URL and WWW are read from it",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--www", help="the www tree (default: the config's WWW)")
    parser.add_argument("--hashes", action="store_true",
                        help="also compare the sha256 of every file and .metadata (reads them)")
    parser.add_argument("--json", action="store_true",
                        help="print the disagreements as a JSON list of {kind, package, detail}")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS until every consumer has applied the "
                             "outbox and the index has nothing dirty")
    parser.add_argument("--settle", type=float, default=0, metavar="SECONDS",
                        help="when something disagrees, look again every second for up to "
                             "SECONDS and report only what persists")
    args = parser.parse_args(argv)  # -q: nothing printed when clean, and no progress
    configure_logging(args, default=logging.WARNING)  # what it finds is printed

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        config = load_config(args.config)
    except SystemExit as exc:  # load_config's clear message
        print(f"piw-audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    www = Path(args.www or config["WWW"])
    from piw_services.settings import SettingError, Settings

    try:  # the audit's own database role when DB_SERVICE_URL is set (docs/security.md)
        db_url = Settings.from_config(config).db_url_for("audit")
    except SettingError as exc:
        print(f"piw-audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        found, files, packages = run(db_url, www, hashes=args.hashes,
                                     wait=args.wait, settle=args.settle, progress=say)
    except AuditError as exc:
        print(f"piw-audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps([d.as_dict() for d in found], indent=1))
    else:
        for disagreement in found:
            print(disagreement.line())
    if found:
        say(f"audit: {len(found)} disagreements ({files} files, {packages} packages checked)")
        return EXIT_FOUND
    clean = f"audit: clean ({files} files, {packages} packages checked)"
    if args.json:
        say(clean)  # stdout holds only the JSON
    elif not args.quiet:
        print(clean)
    return EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
