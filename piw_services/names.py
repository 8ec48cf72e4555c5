"""Package names: PEP 503 canonical form and the validity rule PyPI enforces (PEP 508)."""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# \Z, not $: "$" also matches before a trailing newline, which made "foo\n" a valid name
# (and a package apart from "foo")
_VALID_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
MAX_NAME_LENGTH = 200


def is_valid_name(name: object) -> bool:
    """True when *name* is a project name pip could ask for (ASCII, no spaces)."""
    return (
        isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and bool(_VALID_NAME.match(name))
    )


@lru_cache(maxsize=200_000)
def canonical(name: str) -> str:
    """The PEP 503 form under which every spelling of a name is one project."""
    return str(canonicalize_name(name))


def same_version(a: str, b: str) -> bool:
    """Whether two version strings name one release (``1.0`` and ``1.0.0``; a version PEP 440
    cannot parse only as itself)."""
    if a == b:
        return True
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False
