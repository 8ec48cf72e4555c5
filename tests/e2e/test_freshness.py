"""Following upstream live with the packaged defaults (hold window, poll intervals): a new
release reaches the simple page as a wheel, and a row that arrives after its hold window has
passed still converges (the catalog is last-writer-wins; the hold only saves churn)."""

import time

from tests.conftest import wait_for
from tests.e2e.conftest import release, simple_page, wheel


def test_a_release_reaches_the_page_and_a_late_row_still_converges(system, piw_env, rpc):
    for key in ("PIW_HOLD_SECONDS", "PIW_POLL_INTERVAL"):  # the conftest's: use the defaults
        piw_env.pop(key)
    system.start([])
    system.builder("pi1")
    now = int(time.time())
    rows = release("Fresh.Pkg", "1.0", 1, "pure", t0=now - 1)  # stamped now, as PyPI does
    system.append([{k: v for k, v in row.items() if k != "serial"} for row in rows])
    filename = wheel("fresh_pkg", "1.0")
    page = wait_for(lambda: (p := simple_page(system, "fresh-pkg")) and filename in p and p,
                    120, what="the wheel on the simple page")
    assert "data-yanked" not in page

    # a yank stamped before this moment by more than the hold window: late, still applied
    system.append([{"name": "Fresh.Pkg", "version": "1.0", "action": "yank release",
                    "timestamp": now + 2}])
    wait_for(lambda: "data-yanked" in (simple_page(system, "fresh-pkg") or ""), 60,
             what="the late yank on the simple page")
    # and a row older than the creation (a removal before it, as in PyPI's early years)
    # leaves the package alive with its wheel. (It still names a new life, so the wheel is
    # deleted and built again meanwhile: the known defect of
    # tests/reorderer/test_catalog_properties.py::test_a_deletion_older_than_everything_...)
    system.append([{"name": "Fresh.Pkg", "version": None, "action": "remove project",
                    "timestamp": now - 3600}])
    system.append([{"name": "other", "version": None, "action": "create",
                    "timestamp": int(time.time())}])
    wait_for(lambda: rpc.reorderer.package_state("other")["alive"], 60,
             what="the row after it applied")
    assert rpc.reorderer.package_state("fresh-pkg")["alive"]
    system.settled("fresh-pkg")
    wait_for(lambda: filename in (simple_page(system, "fresh-pkg") or ""), 60,
             what="the wheel on the simple page again")
    system.audit()
