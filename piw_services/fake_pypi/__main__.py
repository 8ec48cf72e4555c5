"""``python -m piw_services.fake_pypi``: the same as the ``piw-fake-pypi`` script."""

import sys

from .server import main

sys.exit(main())
