"""The master's settings, typed and checked once per service.

The configuration (piw_services/config.py: the file, then ``PIW_*`` variables, then the
packaged master.yaml, which is the one list of defaults) arrives as a dict of whatever YAML
and the environment gave. :meth:`Settings.from_config` turns it into one typed, frozen
object, with one parser per setting, so a bad value stops a service at start with a message
naming the setting and its variable, instead of failing where it is first used. Services get
it through the :class:`SettingsProvider` dependency; commands call :meth:`Settings.from_config`
on the loaded config.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from piw_services.config import with_defaults

with warnings.catch_warnings():  # eventlet, which nameko imports, warns that it is deprecated
    warnings.simplefilter("ignore")
    from nameko.extensions import DependencyProvider


class SettingError(ValueError):
    """A setting whose value cannot be used; the message names it."""


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    number = float(value)
    if not math.isfinite(number):
        raise ValueError
    return number


def seconds(value: Any) -> float:
    """A number of seconds, 0 or more."""
    number = _number(value)
    if number < 0:
        raise ValueError
    return number


def positive_seconds(value: Any) -> float:
    """A number of seconds above 0."""
    number = seconds(value)
    if number == 0:
        raise ValueError
    return number


def count(value: Any) -> int:
    """A whole number, 1 or more."""
    number = _number(value)
    if number != int(number) or number < 1:
        raise ValueError
    return int(number)


def text(value: Any) -> str:
    """A non-empty string."""
    if value is None or isinstance(value, (dict, list)) or not str(value).strip():
        raise ValueError
    return str(value).strip()


def optional_text(value: Any) -> str:
    """A string, possibly empty."""
    if isinstance(value, (dict, list)):
        raise ValueError
    return "" if value is None else str(value).strip()


def http_url(value: Any) -> str:
    """An http(s) URL with a host."""
    url = text(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError
    return url.rstrip("/")


def optional_http_url(value: Any) -> str:
    """An http(s) URL, or empty."""
    return http_url(value) if optional_text(value) else ""


def optional_amqp_url(value: Any) -> str:
    """An amqp(s):// URL with a host, or empty."""
    if not optional_text(value):
        return ""
    url = text(value)
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps", "pyamqp") or not parts.hostname:
        raise ValueError
    return url


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def networks(value: Any) -> Networks:
    """``127.0.0.1,::1,10.0.0.0/8``: addresses and networks, comma-separated; empty: none."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in optional_text(value).split(",") if part.strip())


def service_url(value: Any) -> str:
    """Empty, or a URL with ``{service}`` in it."""
    url = optional_text(value)
    if url and "{service}" not in url:
        raise ValueError
    return url


def directory(value: Any) -> Path:
    """A path (need not exist yet)."""
    return Path(text(value))


#: what each parser accepts, for the error message
_EXPECTED: dict[Callable[[Any], Any], str] = {
    seconds: "a number of seconds (0 or more)",
    positive_seconds: "a number of seconds above 0",
    count: "a whole number, 1 or more",
    text: "a non-empty value",
    optional_text: "a string",
    http_url: "an http:// or https:// URL",
    optional_http_url: "an http:// or https:// URL, or empty",
    optional_amqp_url: "an amqps:// (or amqp://) URL, or empty",
    directory: "a directory path",
    networks: "IP addresses or networks, comma-separated (127.0.0.1,::1,10.0.0.0/8)",
}


def setting(key: str, parse: Callable[[Any], Any], env: str | None = None) -> Any:
    """A field read from the config's *key* (set by ``$env``, default ``PIW_<KEY>``)."""
    return dataclasses.field(metadata={"key": key, "parse": parse,
                                       "env": env or f"PIW_{key.upper()}"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of config/master.yaml (read its comments for what each means)."""

    amqp_uri: str = setting("AMQP_URI", text)
    db_url: str = setting("DB_URL", text)
    #: each master service's database URL, {service} standing for its name (db/roles.py)
    db_service_url: str = setting("DB_SERVICE_URL", service_url)
    www: Path = setting("WWW", directory)
    upstream: str = setting("UPSTREAM", http_url)
    hold_seconds: float = setting("HOLD_SECONDS", seconds)
    poll_interval: float = setting("POLL_INTERVAL", positive_seconds)
    poll_min_interval: float = setting("POLL_MIN_INTERVAL", positive_seconds)
    upstream_timeout: float = setting("UPSTREAM_TIMEOUT", positive_seconds)
    backoff_max: float = setting("BACKOFF_MAX", positive_seconds)
    refused_retry: float = setting("REFUSED_RETRY", positive_seconds)
    upstream_contact: str = setting("UPSTREAM_CONTACT", optional_text)
    enrich_days: float = setting("ENRICH_DAYS", seconds)
    #: parsed into build targets by build_dispatch (build_dispatch.logic.parse_targets)
    build_abis: str = setting("BUILD_ABIS", text)
    builder_silence_limit: float = setting("BUILDER_SILENCE_LIMIT", positive_seconds)
    builder_broker: str = setting("BUILDER_BROKER", optional_amqp_url)
    builder_refusal_limit: int = setting("BUILDER_REFUSAL_LIMIT", count)
    queue_window: int = setting("QUEUE_WINDOW", count)
    file_commit_wait: float = setting("FILE_COMMIT_WAIT", seconds)
    upload_max_age: float = setting("UPLOAD_MAX_AGE", positive_seconds)
    index_root_interval: float = setting("INDEX_ROOT_INTERVAL", seconds)
    index_temp_max_age: float = setting("INDEX_TEMP_MAX_AGE", seconds)
    base_url: str = setting("BASE_URL", optional_http_url)
    web_address: str = setting("WEB_SERVER_ADDRESS", text, env="PIW_WEB_ADDRESS")
    web_trusted_proxies: Networks = setting("WEB_TRUSTED_PROXIES", networks)
    web_keepalive: float = setting("WEB_KEEPALIVE", positive_seconds)
    web_timeout: float = setting("WEB_TIMEOUT", positive_seconds)
    web_max_headers: int = setting("WEB_MAX_HEADERS", count)
    stats_salt: str = setting("STATS_SALT", optional_text)
    stats_sample_interval: float = setting("STATS_SAMPLE_INTERVAL", positive_seconds)
    stats_page_interval: float = setting("STATS_PAGE_INTERVAL", positive_seconds)
    stats_index_interval: float = setting("STATS_INDEX_INTERVAL", positive_seconds)
    stats_readings_days: float = setting("STATS_READINGS_DAYS", positive_seconds)
    admin_wait: float = setting("ADMIN_WAIT", seconds)
    max_workers: int = setting("max_workers", count)

    def db_url_for(self, service: str) -> str:
        """The URL *service* connects with: DB_SERVICE_URL with its name, else DB_URL."""
        if self.db_service_url:
            return self.db_service_url.replace("{service}", service)
        return self.db_url

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The settings of *config* (missing ones from the packaged defaults), or
        :class:`SettingError` naming every setting that is wrong."""
        merged = with_defaults(dict(config))
        values, problems = {}, []
        for field in dataclasses.fields(cls):
            key, parse, env = field.metadata["key"], field.metadata["parse"], field.metadata["env"]
            raw = merged.get(key)
            try:
                values[field.name] = parse(raw)
            except (TypeError, ValueError, OverflowError):
                problems.append(f"{key} (${env}) is {str(raw)[:80]!r}: expected "
                                f"{_EXPECTED[parse]}")
        if problems:
            raise SettingError("bad settings: " + "; ".join(problems))
        return cls(**values)


class SettingsProvider(DependencyProvider):
    """Injects the service's :class:`Settings`, read from nameko's config when the service is
    set up: a bad setting stops it from starting, with the reason."""

    def setup(self) -> None:
        self.settings = Settings.from_config(self.container.config)

    def get_dependency(self, worker_ctx: Any) -> Settings:
        return self.settings
