"""piw-builder's settings: a YAML file with ``${ENV:default}`` substitution, checked up front.

A Pi installs ``builders/`` without the server's code, so this is a loader of its own rather
than nameko's. Substitution happens inside scalar strings only (an environment variable can
never inject YAML structure), and each setting is then converted by its own parser rather than
by YAML's implicit typing, under which a label like ``0755`` would become the number 493 and
``off`` would become False. Every problem is reported as one line naming the file and setting,
so the CLI can print it and exit 2 before touching the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from builders import protocol, sysinfo
from builders.commandline import ConfigSource, find_config

__all__ = [
    "DEFAULTS",
    "DEFAULT_CONFIG",
    "ConfigError",
    "Interpreter",
    "Settings",
    "load_settings",
    "parse_preinstalled",
    "probe_python",
    "substitute",
]

CONFIG_ENV = "PIW_BUILDER_CONFIG"
#: The default settings file, packaged with piw (a link to config/builder.yaml in the checkout).
PACKAGE, FILENAME = "builders", "builder.yaml"
DEFAULT_CONFIG = ConfigSource(f"{PACKAGE}:{FILENAME}", packaged=True)

#: Every setting, as the packaged builder.yaml spells it (``${PIW_...:default}``): what applies
#: to a setting a builder's own file leaves out, so the environment overrides work either way.
DEFAULTS: dict[str, str] = yaml.safe_load(DEFAULT_CONFIG.read_text())

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Seconds the interpreter probe may take (a cold start on an SD card is slow, not this slow).
PROBE_TIMEOUT = 60.0
#: Run by the PYTHON interpreter: its ABI is what the builds produce, not ours.
_PROBE = (
    "import importlib.util, json, struct, sys, sysconfig\n"
    "print(json.dumps({'implementation': sys.implementation.name,\n"
    "                  'pip': importlib.util.find_spec('pip') is not None,\n"
    "                  'version': list(sys.version_info[:2]),\n"
    "                  'abiflags': getattr(sys, 'abiflags', ''),\n"
    "                  'full_version': sys.version.split()[0],\n"
    "                  'platform': sysconfig.get_platform(),\n"
    "                  'is_32bit': struct.calcsize('P') == 4}))\n"
)


class ConfigError(ValueError):
    """A setting that cannot work; the text is one line saying which and why."""


@dataclass(frozen=True)
class Settings:
    """The checked settings (seconds as floats, paths as Paths)."""

    amqp_uri: str
    ca_file: Path | None
    index_url: str
    label: str
    python: str
    abi: str | None
    platform: str | None
    build_timeout: float
    work_dir: Path
    heartbeat_interval: float
    preinstalled: tuple[str, ...]
    reply_timeout: float
    upload_retries: int
    log_level: str


@dataclass(frozen=True)
class Interpreter:
    """What the build interpreter is: its ABI tag, version and the platform tag of its wheels."""

    abi: str
    version: str
    platform: str

    @property
    def target(self) -> str:
        """The build target whose jobs this builder takes: ``cp311-linux_armv7l``."""
        return protocol.target_key(self.abi, self.platform)


def substitute(value: str, env: Mapping[str, str]) -> str:
    """Replace each ``${NAME:default}`` in ``value`` by the variable or its default.

    ``${NAME}`` without a default must be set. The result stays a string: the setting's own
    parser gives it a type.
    """

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set and has no default")
        return default

    return _VAR.sub(replace, value)


def parse_preinstalled(text: str) -> tuple[str, ...]:
    """Package names from a list file: one a line, ``#`` starts a comment, blanks skipped."""
    names = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(name for name in names if name)


# -- per-setting parsers: each takes the substituted value, returns it typed or raises -------
def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"must be a string, not {value!r}")
    return str(value).strip()


def _url(schemes: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        url = _text(value)
        parts = urlsplit(url)
        if parts.scheme not in schemes or not parts.netloc:
            raise ConfigError(f"must be a {'/'.join(schemes)} URL, not {url!r}")
        return url

    return parse


def _seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"must be a positive number of seconds, not {value!r}")
    try:
        seconds = float(str(value))
    except ValueError:
        raise ConfigError(f"must be a positive number of seconds, not {value!r}") from None
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"must be a positive number of seconds, not {value!r}")
    return seconds


def _count(value: object) -> int:
    text = str(value).strip() if isinstance(value, str | int) else None
    if isinstance(value, bool) or text is None or not text.isdigit():
        raise ConfigError(f"must be a whole number >= 0, not {value!r}")
    return int(text)


def _label(value: object) -> str:
    label = socket.gethostname() if _blank(value) else _text(value)
    if not 0 < len(label) <= 100 or not label.isprintable():
        raise ConfigError(f"must be 1-100 printable characters, not {label!r}")
    return label


def _python(value: object) -> str:
    if _blank(value):
        return sys.executable
    python = _text(value)
    found = shutil.which(python)
    if found is None:
        raise ConfigError(f"no executable {python!r}")
    return os.path.abspath(found)


def _tag(check: Callable[[str], str]) -> Callable[[object], str | None]:
    """The parser of an optional tag setting (ABI, PLATFORM): blank is None, anything else
    must pass the protocol's own *check*."""
    def parse(value: object) -> str | None:
        if _blank(value):
            return None
        try:
            return check(_text(value))
        except protocol.ProtocolError as exc:
            raise ConfigError(str(exc)) from None
    return parse


def _ca_file(value: object) -> Path | None:
    """A file of PEM CA certificates the broker's certificate must verify against; blank:
    the system's CAs (a broker with a certificate from a public CA)."""
    if _blank(value):
        return None
    path = Path(_text(value)).expanduser()
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{path} holds no usable PEM CA certificate "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    return path


def _work_dir(value: object) -> Path:
    return Path(tempfile.gettempdir() if _blank(value) else _text(value)).expanduser()


def _preinstalled(value: object) -> tuple[str, ...]:
    if _blank(value):
        return ()
    path = Path(_text(value)).expanduser()
    try:
        return parse_preinstalled(path.read_text(errors="replace"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def _log_level(value: object) -> str:
    level = _text(value).upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"must be one of {', '.join(_LOG_LEVELS)}, not {value!r}")
    return level


_PARSERS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "AMQP_URI": ("amqp_uri", _url(("amqp", "amqps", "pyamqp"))),
    "CA_FILE": ("ca_file", _ca_file),
    "INDEX_URL": ("index_url", _url(("http", "https"))),
    "LABEL": ("label", _label),
    "PYTHON": ("python", _python),
    "ABI": ("abi", _tag(protocol.check_abi)),
    "PLATFORM": ("platform", _tag(protocol.check_platform)),
    "BUILD_TIMEOUT": ("build_timeout", _seconds),
    "WORK_DIR": ("work_dir", _work_dir),
    "HEARTBEAT_INTERVAL": ("heartbeat_interval", _seconds),
    "PREINSTALLED": ("preinstalled", _preinstalled),
    "REPLY_TIMEOUT": ("reply_timeout", _seconds),
    "UPLOAD_RETRIES": ("upload_retries", _count),
    "LOG_LEVEL": ("log_level", _log_level),
}


def _read_file(source: ConfigSource) -> dict[str, Any]:
    path = source.name
    try:
        text = source.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of settings, not {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in DEFAULTS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)} "
                          f"(known: {', '.join(DEFAULTS)})")
    return data


def load_settings(path: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None,
                  label: str | None = None) -> Settings:
    """Read ``path`` (else ``$PIW_BUILDER_CONFIG``, else ./config/builder.yaml when it exists,
    else the packaged one: builders.commandline.find_config), substitute the environment
    and check every setting.

    ``label`` (the command line's ``--label``) beats the file. Raises :class:`ConfigError`.
    """
    env = os.environ if env is None else env
    source = find_config(path, CONFIG_ENV, FILENAME, PACKAGE, env)
    raw: dict[str, Any] = dict(DEFAULTS)
    raw.update(_read_file(source))
    if label is not None:
        raw["LABEL"] = label
    values: dict[str, Any] = {}
    for key, (attr, parse) in _PARSERS.items():
        value = raw[key]
        try:
            if isinstance(value, str):
                value = substitute(value, env)
            values[attr] = parse(value)
        except ConfigError as exc:
            raise ConfigError(f"{source.name}: {key} {exc}") from None
    if values["ca_file"] is not None and urlsplit(values["amqp_uri"]).scheme != "amqps":
        raise ConfigError(f"{source.name}: CA_FILE is set but AMQP_URI is not amqps://: the "
                          "connection would not use TLS at all")
    return Settings(**values)


def probe_python(python: str, abi: str | None = None, timeout: float = PROBE_TIMEOUT,
                 platform: str | None = None) -> Interpreter:
    """Ask the build interpreter for its ABI, version and platform by running it.

    One builder process may build for another Python than the one it runs on, so the ABI and
    platform it announces (its build target, hence its job queue) must be that
    interpreter's. The platform comes from the interpreter's own userland (sysconfig and its
    pointer size), not uname: 32-bit Raspberry Pi OS on a 64-bit kernel builds linux_armv7l
    wheels. ``abi`` and ``platform`` (the ABI and PLATFORM settings) override what the probe
    says; ABI is needed for anything but CPython. Raises :class:`ConfigError`.
    """
    try:
        done = subprocess.run([python, "-I", "-c", _PROBE], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"PYTHON {python}: cannot run it: {exc}") from None
    try:
        facts = json.loads(done.stdout)
        major, minor = facts["version"]
        implementation, has_pip = str(facts["implementation"]), bool(facts["pip"])
        interpreter = Interpreter(
            abi=f"cp{int(major)}{int(minor)}{facts['abiflags']}",
            version=str(facts["full_version"]),
            platform=sysinfo.platform_tag(str(facts["platform"]), bool(facts["is_32bit"])),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"PYTHON {python}: not a working Python 3 "
                          f"(exit status {done.returncode}: {last})") from None
    if not has_pip:
        raise ConfigError(f"PYTHON {python} has no pip: every build would fail")
    if platform is not None:
        interpreter = Interpreter(interpreter.abi, interpreter.version, platform)
    try:
        protocol.check_platform(interpreter.platform)
    except protocol.ProtocolError as exc:
        raise ConfigError(f"PYTHON {python}: {exc}; set PLATFORM") from None
    if abi is not None:
        return Interpreter(abi, interpreter.version, interpreter.platform)
    if implementation != "cpython":
        raise ConfigError(f"PYTHON {python} is {implementation}, not CPython: set ABI")
    try:
        protocol.check_abi(interpreter.abi)
    except protocol.ProtocolError as exc:
        raise ConfigError(f"PYTHON {python}: {exc}; set ABI") from None
    return interpreter
