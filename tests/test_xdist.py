"""tests/conftest.py leaves pytest-xdist's controller unpatched by eventlet (it runs no test;
patched, it hangs handing tests out) and patches every worker and every run without xdist."""

import pytest

from tests.conftest import xdist_controller


@pytest.mark.parametrize("argv, env, controller", [
    (["-q"], {}, False),
    (["-n", "2", "--dist", "loadfile"], {}, True),
    (["-n2"], {}, True),
    (["-nauto"], {}, True),
    (["--numprocesses=2"], {}, True),
    (["--numprocesses", "logical"], {}, True),
    (["-n", "0"], {}, False),  # xdist runs the tests in this process
    (["-n", "2", "-n", "0"], {}, False),  # the last one counts, as for pytest
    (["-q"], {"PYTEST_ADDOPTS": "-n 2"}, True),
    (["-n", "0"], {"PYTEST_ADDOPTS": "-n 2"}, False),  # the command line comes after
    (["-n", "2"], {"PYTEST_XDIST_WORKER": "gw0"}, False),  # a worker runs tests: patched
])
def test_only_the_xdist_controller_is_left_unpatched(argv, env, controller):
    assert xdist_controller(argv, env) is controller
