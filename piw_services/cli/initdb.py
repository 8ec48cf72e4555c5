"""``piw-initdb``: create piw's database if needed and migrate it to the current schema."""

from __future__ import annotations

import argparse
import sys

from piw_services.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="piw-initdb", description=__doc__)
    parser.add_argument("-c", "--config", help="config file (default config/master.yaml)")
    parser.add_argument("--check", action="store_true",
                        help="only check that the schema is current (exit 1 when not)")
    args = parser.parse_args(argv)
    config = load_config(args.config)

    from sqlalchemy.engine import make_url

    from piw_services.db import create_database, head_revision, schema_problem, upgrade

    url = config["DB_URL"]
    shown = make_url(url).render_as_string(hide_password=True)
    if args.check:
        problem = schema_problem(url)
        if problem:
            print(f"piw-initdb: {problem}", file=sys.stderr)
            return 1
        print(f"{shown}: schema is current ({head_revision()})")
        return 0
    try:
        if create_database(url):
            print(f"created database {shown}")
        upgrade(url)
    except Exception as exc:
        print(f"piw-initdb: cannot set up {shown}: {exc}", file=sys.stderr)
        return 1
    print(f"{shown}: schema at {head_revision()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
