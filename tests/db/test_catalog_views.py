"""The catalog's rules have one home in SQL: migration 0009's views.

tests/reorderer/test_store.py checks that the views agree with the reorderer's own rules on
every generated log; this test keeps every other module from writing the conditions out again.
"""

import re
from pathlib import Path

import piw_services

PACKAGE = Path(piw_services.__file__).parent
#: The reorderer's in-memory rules (the writer's truth) and the migrations that define the views.
HOMES = {PACKAGE / "reorderer" / "catalog.py"}
RAW_CONDITIONS = re.compile(
    r"created_k\s*>|quarantine_k\s*>|greatest\(\s*\w+\.deleted_k|deleted_k\s*<")


def test_no_module_writes_the_catalog_conditions_out_again():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in HOMES or path.parent.name == "versions":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if RAW_CONDITIONS.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, ("select from live_packages, live_versions, servable_packages or "
                           "servable_versions instead:\n" + "\n".join(offenders))


def test_the_guard_sees_a_raw_condition():
    assert RAW_CONDITIONS.search('"WHERE v.created_k > greatest(v.deleted_k, p.deleted_k)"')
    assert RAW_CONDITIONS.search("p.quarantined AND p.quarantine_k > p.deleted_k")
