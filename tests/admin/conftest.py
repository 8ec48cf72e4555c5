"""The admin tests' catalog fixture (foo 1.0 and 2.0, two build targets), for every module."""

from tests.admin.test_actions import s  # noqa: F401
