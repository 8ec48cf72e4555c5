"""``piw-initdb``: create piw's database if needed and migrate it to the current schema."""

from __future__ import annotations

import logging
import sys

from builders.commandline import command_parser, configure_logging
from piw_services.config import CONFIG_HELP, load_config


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("piw-initdb", __doc__, config=CONFIG_HELP)
    parser.add_argument("--check", action="store_true",
                        help="only check that the schema is current (exit 1 when not)")
    args = parser.parse_args(argv)
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
        upgrade(url)
    except Exception as exc:  # the driver's, SQLAlchemy's or a migration's: one line
        print(f"piw-initdb: {db_message(exc, url)}", file=sys.stderr)
        return 1
    log.info("%s: schema at %s", shown, head_revision())
    return 0


if __name__ == "__main__":
    sys.exit(main())
