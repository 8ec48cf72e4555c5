"""What every ``piw-*`` command shares: its common options, logging, version and config file.

piwheels' tools all take ``-c/--configuration``, ``-q``, ``-v``, ``-l/--log-file`` and
``--version`` (piwheels/terminal.py, ``configure_parser``), and ``-y/--yes`` where they ask for
confirmation; ours take the same, from this one parser. It lives in ``builders/`` because the
builder must not import the server's code (a Pi installs only ``builders/``), while the
master's commands may import this.

A config file is found the same way by every command: ``-c FILE``, else the command's
environment variable (``PIW_CONFIG``, the builder's ``PIW_BUILDER_CONFIG``), else
``./config/<name>`` in the current directory when it exists, else the default packaged with
piw (read with :mod:`importlib.resources`, so an installed wheel needs no checkout).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ConfigSource", "command_parser", "configure_logging", "find_config", "version"]

#: Console lines: the message only; the log file (``-l``) gets timestamps and the level.
CONSOLE_FORMAT = "%(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s {prog}: %(message)s"


def version() -> str:
    """The installed package's version (what ``--version`` prints)."""
    try:
        return importlib.metadata.version("piw")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout never installed
        return "unknown (not installed)"


def command_parser(prog: str, description: str | None = None, *, config: str | None = None,
                   confirm: bool = False, **kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser with the common options: ``--version``, ``-c/--configuration FILE``
    (also ``--config``; *config* is its help, None for a command that reads no config),
    ``-q/--quiet`` or ``-v/--verbose``, ``-l/--log-file FILE``, and with *confirm*
    ``-y/--yes``. The command adds its own options after."""
    parser = argparse.ArgumentParser(prog=prog, description=description, **kwargs)
    parser.set_defaults(prog=prog)  # the name in the log file's lines
    parser.add_argument("--version", action="version", version=f"%(prog)s (piw) {version()}")
    if config is not None:
        parser.add_argument("-c", "--configuration", "--config", dest="config",
                            metavar="FILE", help=config)
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    loud.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    parser.add_argument("-l", "--log-file", metavar="FILE",
                        help="also append the log to FILE, with timestamps")
    if confirm:
        parser.add_argument("-y", "--yes", action="store_true",
                            help="do not ask for confirmation")
    return parser


def console_level(args: argparse.Namespace, default: int | str = logging.INFO) -> int:
    """WARNING with ``-q``, DEBUG with ``-v``, else *default* (a number or a level name)."""
    if args.quiet:
        return logging.WARNING
    if args.verbose:
        return logging.DEBUG
    return default if isinstance(default, int) else logging.getLevelName(default.upper())


def configure_logging(args: argparse.Namespace, logger: logging.Logger | None = None, *,
                      default: int | str = logging.INFO, console_format: str = CONSOLE_FORMAT,
                      console: bool = True, file_level: int = logging.INFO) -> logging.Logger:
    """Apply ``-q``/``-v``/``-l`` to *logger* (default: the root logger) and return it.

    With *console*, a stderr handler at the chosen level is added unless the logger has
    handlers already (a command that configured logging from its config file keeps those,
    set to the chosen level). ``-l FILE`` appends what is done (*file_level* and up, and DEBUG
    with ``-v``; ``-q`` quietens only the console), with timestamps and the command's name;
    a file that cannot be opened ends the command with status 2 and one line.
    """
    logger = logger if logger is not None else logging.getLogger()
    level = console_level(args, default)
    if console and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(console_format))
        logger.addHandler(handler)
    for handler in logger.handlers:
        handler.setLevel(level)
    logger.setLevel(level)
    if getattr(args, "log_file", None):
        prog = getattr(args, "prog", None) or os.path.basename(sys.argv[0]) or "piw"
        try:
            handler = logging.FileHandler(args.log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            print(f"{prog}: cannot open log file {args.log_file}: {exc.strerror or exc}",
                  file=sys.stderr)
            raise SystemExit(2) from None
        handler.setFormatter(logging.Formatter(FILE_FORMAT.format(prog=prog)))
        handler.setLevel(min(level, file_level))
        logger.addHandler(handler)
        logger.setLevel(min(level, file_level))
    return logger


@dataclass(frozen=True)
class ConfigSource:
    """A config file to read: its text and a name for messages (a path, or ``package:name``
    for the packaged default)."""

    name: str
    packaged: bool

    def read_text(self) -> str:
        """The file's text; OSError when it cannot be read."""
        if self.packaged:
            package, _, resource = self.name.partition(":")
            return importlib.resources.files(package).joinpath(resource).read_text()
        return Path(self.name).read_text()


def find_config(path: str | os.PathLike[str] | None, env_var: str, filename: str,
                package: str, env: Mapping[str, str] | None = None) -> ConfigSource:
    """Which config file a command reads: *path* (``-c``), else ``$env_var``, else
    ``./config/<filename>`` when it exists, else *filename* packaged in *package*."""
    env = os.environ if env is None else env
    chosen = path or env.get(env_var)
    if chosen:
        return ConfigSource(os.fspath(chosen), packaged=False)
    local = Path("config") / filename
    if local.is_file():
        return ConfigSource(str(local), packaged=False)
    return ConfigSource(f"{package}:{filename}", packaged=True)
