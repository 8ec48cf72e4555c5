"""``piw-initdb``: create piw's database if needed, migrate it to the current schema, and make
its database roles (an owner, one per service) with their grants (docs/security.md)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from builders.commandline import command_parser, configure_logging
from piw_services.config import CONFIG_HELP, load_config


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("piw-initdb", __doc__, config=CONFIG_HELP)
    parser.add_argument("--check", action="store_true",
                        help="only check that the schema is current (exit 1 when not)")
    parser.add_argument("--passfile", metavar="FILE",
                        help="give each service's database role a random password and write "
                             "them to this libpq password file (mode 0600), which "
                             "DB_SERVICE_URL names (?passfile=FILE); roles it already has a "
                             "line for keep their password")
    parser.add_argument("--rotate", action="store_true",
                        help="with --passfile: new passwords for every role")
    args = parser.parse_args(argv)
    if args.rotate and not args.passfile:
        parser.error("--rotate needs --passfile")
    log = logging.getLogger("piw.cli.initdb")
    log.propagate = False  # its own lines; alembic's go to the root logger, warnings only
    configure_logging(args, log)
    config = load_config(args.config)

    from piw_services.db import (
        BadDatabaseURL,
        create_database,
        database_url,
        db_message,
        head_revision,
        schema_problem,
        shown_url,
        upgrade,
    )

    url = str(config["DB_URL"])
    try:
        database_url(url)
    except BadDatabaseURL as exc:
        print(f"piw-initdb: {exc}", file=sys.stderr)
        return 2
    shown = shown_url(url)
    if args.check:
        problem = schema_problem(url)
        if problem:
            print(f"piw-initdb: {problem}", file=sys.stderr)
            return 1
        log.info("%s: schema is current (%s)", shown, head_revision())
        return 0
    try:
        if create_database(url):
            log.info("created database %s", shown)
        upgrade(url, roles=True)
        if args.passfile:
            changed = _passwords(url, Path(args.passfile), args.rotate)
            log.info("new passwords for %s in %s", ", ".join(changed) or "no role",
                     args.passfile)
    except Exception as exc:  # the driver's, SQLAlchemy's or a migration's: one line
        print(f"piw-initdb: {db_message(exc, url)}", file=sys.stderr)
        return 1
    log.info("%s: schema at %s", shown, head_revision())
    return 0


def _passwords(url: str, passfile: Path, rotate: bool) -> list[str]:
    from piw_services.db import database_url, make_engine
    from piw_services.db.roles import set_passwords

    parsed = database_url(url)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            return set_passwords(conn, str(parsed.database), parsed.host or "localhost",
                                 parsed.port or 5432, passfile, rotate)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
