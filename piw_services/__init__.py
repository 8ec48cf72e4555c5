"""piw: a wheel-building index for Raspberry Pi, as nameko services on RabbitMQ.

The master's code needs the ``master`` extra; a builder Pi installs the plain package, whose
``piw-master`` and other master commands then say so in one line instead of a traceback.
"""

import importlib.util

#: The one place the version is written (setup.cfg reads it).
__version__ = "0.1.0"

_MISSING = [name for name in ("nameko", "sqlalchemy") if importlib.util.find_spec(name) is None]
if _MISSING:
    raise SystemExit(f"piw's master commands need the master's libraries (missing: "
                     f"{', '.join(_MISSING)}): pip install 'piw[master]'")
