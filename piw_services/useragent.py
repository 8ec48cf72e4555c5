"""User-Agent headers of pip, uv and everything else, read into flat fields for the stats.

pip (since 6.0) sends ``pip/<version> <json>`` where the JSON describes the machine (see pip's
``pip._internal.network.session.user_agent``); uv sends the same shape as ``uv/<version> <json>``.
Anything else yields only its product token (``curl/8.5.0`` -> name ``curl``, version
``8.5.0``) and nulls. A header is client input: nothing here may raise, whatever it holds, and
every value is a short string or None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

#: The fields every parsed agent has (None when unknown), in the order the stats store them.
FIELDS = (
    "installer_name",
    "installer_version",
    "python_version",
    "implementation_name",
    "implementation_version",
    "distro_name",
    "distro_version",
    "distro_id",
    "system_name",
    "system_release",
    "arch",
)
#: Installers known to append a JSON description of the machine to their product token.
JSON_AGENTS = frozenset({"pip", "uv"})
#: A header longer than this is read only this far (a pip header is about 400 characters).
MAX_AGENT = 8192
#: Each field is cut to this length.
MAX_FIELD = 100
# RFC 9110 product = token ["/" product-version]; the version is also a token.
_PRODUCT = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:/([!#$%&'*+.^_`|~0-9A-Za-z-]+))?")


def _text(value: object) -> str | None:
    """*value* as a field: a non-empty string, stripped of control characters and cut short."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = "".join(ch for ch in str(value)[:MAX_FIELD] if ch.isprintable()).strip()
    return text or None


def _get(data: Any, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return _text(data)


def parse_user_agent(header: str | None) -> dict[str, str | None]:
    """The :data:`FIELDS` of a User-Agent header (all None for a missing or unreadable one)."""
    fields: dict[str, str | None] = dict.fromkeys(FIELDS)
    if not header or not isinstance(header, str):
        return fields
    header = header[:MAX_AGENT].strip()
    product = _PRODUCT.match(header)
    if not product:
        return fields
    name, version = product.groups()
    fields["installer_name"] = _text(name)
    fields["installer_version"] = _text(version)
    rest = header[product.end():].strip()
    if name.lower() in JSON_AGENTS and rest.startswith("{"):
        try:
            data = json.loads(rest)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            fields.update(
                installer_name=_get(data, "installer", "name") or fields["installer_name"],
                installer_version=(_get(data, "installer", "version")
                                   or fields["installer_version"]),
                python_version=_get(data, "python"),
                implementation_name=_get(data, "implementation", "name"),
                implementation_version=_get(data, "implementation", "version"),
                distro_name=_get(data, "distro", "name"),
                distro_version=_get(data, "distro", "version"),
                distro_id=_get(data, "distro", "id"),
                system_name=_get(data, "system", "name"),
                system_release=_get(data, "system", "release"),
                arch=_get(data, "cpu"),
            )
    return fields


@lru_cache(maxsize=1024)
def cached_fields(header: str | None) -> Mapping[str, str | None]:
    """:func:`parse_user_agent`, read-only and remembered: a busy index sees the same few
    hundred headers over and over, and a pip header's JSON costs more than the rest of an
    event."""
    return MappingProxyType(parse_user_agent(header))
