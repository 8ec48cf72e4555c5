"""``piw-image-packages``: the apt packages preinstalled on each target image, as data.

Users of a Raspberry Pi OS Lite image never need to ``apt install`` what the image already has,
so the index leaves those packages out of each file's apt dependencies (by the distro of the
file's build ABI, build_abis.distro). ``files.apt_depends`` keeps what the builder found: loading
a new list changes the pages (the packages concerned are marked dirty) without any rebuild.

``load`` reads the lists people have: ``dpkg-query -W -f '${Package}\\n'`` (one name a line),
``dpkg -l`` output (installed lines only), or the ``.packages`` file published next to each
Raspberry Pi OS image ("name version" or "name:arch version" lines). Blank lines and ``#``
comments are skipped; anything else is refused with its line number.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Iterable
from typing import IO

from sqlalchemy import text
from sqlalchemy.orm import Session

from builders.commandline import command_parser, configure_logging
from piw_services.config import CONFIG_HELP, load_config

EXIT_OK = 0
EXIT_ERROR = 2

#: A list bigger than this is not a package list (a full desktop image lists ~2,500 packages).
MAX_BYTES = 16 * 1024 * 1024
MAX_LINE = 4096
MAX_PACKAGES = 100_000

#: Debian policy 5.6.1: lower case letters, digits, + - . ; at least two, alphanumeric first;
#: optionally dpkg's ":arch" qualifier (multi-arch), which we strip.
_NAME = re.compile(r"([a-z0-9][a-z0-9+.-]+)(?::[a-z0-9][a-z0-9-]*)?")
#: ``dpkg -l``'s first column: desired action, status, error flag (e.g. ii, hi, rc, iU, iHR).
_DPKG_L_STATE = re.compile(r"[uihrp][ncHUFWti]R?")
_DISTRO = re.compile(r"[a-z][a-z0-9._-]{0,62}")


class ImageListError(ValueError):
    """The input is not a package list we can read; the message says why and where."""


def _shown(line: str, limit: int = 60) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


def parse_package_list(data: bytes) -> list[str]:
    """The package names (sorted, arch-less, unique) in *data*, in any of the formats above.

    Strict on purpose: a file that is not a package list (a binary, an HTML error page) must
    not quietly become one, since the names loaded hide dependencies from users."""
    if len(data) > MAX_BYTES:
        raise ImageListError(f"more than {MAX_BYTES} bytes: not a package list")
    if b"\x00" in data:
        raise ImageListError("binary data (NUL bytes): not a package list")
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImageListError(f"not UTF-8 text (byte {exc.start}): not a package list") from None
    names: set[str] = set()
    for number, raw in enumerate(content.split("\n"), 1):
        if len(raw) > MAX_LINE:
            raise ImageListError(f"line {number} is longer than {MAX_LINE} characters")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("Desired=", "|", "+++-")):  # dpkg -l's header
            continue
        fields = line.split()
        if len(fields) >= 4 and _DPKG_L_STATE.fullmatch(fields[0]):
            if fields[0][1:2] != "i":  # not installed (rc: only its config files are left)
                continue
            candidate = fields[1]
        elif len(fields) <= 2:  # a name, or "name version"
            candidate = fields[0]
        else:
            raise ImageListError(f"line {number} is not 'name', 'name version' or a dpkg -l "
                                 f"line: {_shown(line)}")
        match = _NAME.fullmatch(candidate)
        if match is None:
            raise ImageListError(f"line {number}: {_shown(candidate)} is not a Debian "
                                 "package name")
        names.add(match.group(1))
        if len(names) > MAX_PACKAGES:
            raise ImageListError(f"more than {MAX_PACKAGES} packages: not an image's list")
    if not names:
        raise ImageListError("no package names in it (blank lines and comments only)")
    return sorted(names)


def check_distro(distro: str) -> str:
    """*distro* as build_abis spells it (bookworm, trixie), or ImageListError."""
    if not _DISTRO.fullmatch(distro):
        raise ImageListError(f"{_shown(distro)} is not a distro name (like bookworm)")
    return distro


def load(session: Session, distro: str, packages: Iterable[str],
         source: str) -> tuple[int, int, int]:
    """Replace *distro*'s image list with *packages* in the caller's transaction, and mark
    dirty every package with files built for it; (added, removed, packages marked).

    The image_loads row is locked first, so two loads of one distro apply one after the other
    and the set is always exactly one of them."""
    from piw_services.index import dirty

    wanted = sorted(set(packages))
    session.execute(text(
        "INSERT INTO image_loads (distro, source, count) VALUES (:d, :s, 0) "
        "ON CONFLICT (distro) DO NOTHING"), {"d": distro, "s": source})
    session.execute(text("SELECT 1 FROM image_loads WHERE distro = :d FOR UPDATE"),
                    {"d": distro})
    removed = session.execute(text(
        "DELETE FROM image_packages WHERE distro = :d "
        "AND NOT (package = ANY(CAST(:p AS text[])))"), {"d": distro, "p": wanted}).rowcount
    added = session.execute(text(
        "INSERT INTO image_packages (distro, package) "
        "SELECT :d, unnest(CAST(:p AS text[])) ON CONFLICT DO NOTHING"),
        {"d": distro, "p": wanted}).rowcount
    session.execute(text(
        "UPDATE image_loads SET source = :s, loaded_at = now(), count = :n WHERE distro = :d"),
        {"d": distro, "s": source, "n": len(wanted)})
    marked: list[str] = []
    if added or removed:
        marked = list(session.execute(text(
            "SELECT DISTINCT f.package FROM files f JOIN build_abis a ON a.abi = f.abi "
            "WHERE a.distro = :d"), {"d": distro}).scalars())
        dirty.mark(session, marked)
    return added, removed, len(marked)


def loads(session: Session, distro: str | None = None) -> list[tuple[str, int, str, str, str]]:
    """(distro, packages, loaded at, source, ABIs using it) of each loaded distro."""
    return [(r.distro, r.count, r.loaded_at.isoformat(timespec="seconds"), r.source,
             r.abis or "") for r in session.execute(text(
        "SELECT l.distro, l.count, l.loaded_at, l.source, (SELECT string_agg(a.abi, ',' "
        "ORDER BY a.abi) FROM build_abis a WHERE a.distro = l.distro) AS abis "
        "FROM image_loads l WHERE CAST(:d AS text) IS NULL OR l.distro = :d ORDER BY 1"),
        {"d": distro})]


def _read(path: str, stdin: IO[bytes]) -> bytes:
    """At most MAX_BYTES + 1 bytes of *path* (``-``: stdin), so a huge input is refused
    without being read whole."""
    if path == "-":
        return stdin.read(MAX_BYTES + 1)
    try:
        with open(path, "rb") as f:
            return f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ImageListError(str(exc.strerror or exc)) from None


def main(argv: list[str] | None = None) -> int:
    config_help = CONFIG_HELP + "; DB_URL is read from it"
    parser = command_parser("piw-image-packages", __doc__, config=config_help,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)  # -c after the command works too
    common.add_argument("-c", "--configuration", "--config", dest="config", metavar="FILE",
                        default=argparse.SUPPRESS, help=config_help)
    commands = parser.add_subparsers(dest="command", required=True)
    load_cmd = commands.add_parser("load", parents=[common],
                                   help="replace a distro's list of preinstalled packages "
                                        "with the names in FILE")
    load_cmd.add_argument("--distro", required=True,
                          help="the distro of build_abis it applies to (e.g. bookworm)")
    load_cmd.add_argument("file", metavar="FILE", help="the list; - reads stdin")
    list_cmd = commands.add_parser("list", parents=[common],
                                   help="the distros loaded, with counts and load times")
    list_cmd.add_argument("--distro", help="only this one")
    args = parser.parse_args(argv)
    configure_logging(args, default=logging.WARNING)  # what it finds is printed

    def fail(message: str) -> int:
        print(f"piw-image-packages: {message}", file=sys.stderr)
        return EXIT_ERROR

    packages: list[str] = []
    try:
        if args.distro is not None:
            check_distro(args.distro)
    except ImageListError as exc:
        return fail(str(exc))
    try:
        if args.command == "load":
            packages = parse_package_list(_read(args.file, sys.stdin.buffer))
    except ImageListError as exc:
        return fail(f"{args.file}: {exc}")
    try:
        config = load_config(args.config)
    except SystemExit as exc:  # load_config's clear message
        return fail(str(exc))

    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import sessionmaker

    from piw_services.db import BadDatabaseURL, db_message, make_engine

    try:
        engine = make_engine(str(config["DB_URL"]), pool_size=1)
    except BadDatabaseURL as exc:
        return fail(str(exc))
    try:
        with sessionmaker(engine)() as s, s.begin():
            if args.command == "list":
                rows = loads(s, args.distro)
            else:
                source = "stdin" if args.file == "-" else args.file
                added, removed, marked = load(s, args.distro, packages, source)
                abis = s.execute(text("SELECT string_agg(abi, ',' ORDER BY abi) FROM "
                                      "build_abis WHERE distro = :d"),
                                 {"d": args.distro}).scalar()
    except SQLAlchemyError as exc:
        return fail(db_message(exc, str(config["DB_URL"])))
    finally:
        engine.dispose()
    if args.command == "list":
        if not rows:
            print("no image lists loaded" + (f" for {args.distro}" if args.distro else ""))
        for distro, count, at, src, using in rows:
            print(f"{distro}\t{count} packages\tloaded {at}\tfrom {src}\t"
                  f"ABIs: {using or '(none yet)'}")
        return EXIT_OK
    change = f"+{added} -{removed}" if added or removed else "unchanged"
    print(f"{args.distro}: {len(packages)} packages ({change}); "
          f"{marked} packages marked for re-render")
    if not abis:
        print(f"note: no build ABI uses distro {args.distro} yet (build_abis)", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
