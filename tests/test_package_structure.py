"""Who may import whom (docs/architecture.md, "Shared code"), read from the source with ast.

- builders/ (what a Pi installs) imports nothing of piw_services;
- shared modules (piw_services/*.py, piw_services/db/ and piw_services/site/) import no
  service and no tool;
- a service reads another service's data only through that service's named read module or an
  event, never through its ``store``;
- service packages import each other without cycles;
- a service's SQL names only its own tables (piw_services/db/ownership.py), the catalog views
  and the outbox: another service's tables are read through that service's ``queries``.

The SQL that breaks the last rule and the cycles that break the one before it today are listed
by name below; each is work left (issue 15): remove its line when it goes, and add none.
"""

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"admin", "audit", "build_dispatch", "file_manager", "index", "reorderer", "stats",
            "upstream", "web"}
TOOLS = {"cli", "fake_pypi"}

#: service-package import cycles today, each as a sorted pair
KNOWN_CYCLES: set[tuple[str, str]] = set()


def imports(path: Path) -> set[str]:
    """Every module *path* imports (``from a import b`` counts as ``a.b`` and ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_of(path: Path) -> str | None:
    """The piw_services subpackage *path* belongs to (None for a top-level module)."""
    parts = path.relative_to(ROOT / "piw_services").parts
    return parts[0] if len(parts) > 1 else None


def service_imported(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == "piw_services" and parts[1] in SERVICES | TOOLS:
        return parts[1]
    return None


def sources(top: str):
    return sorted((ROOT / top).rglob("*.py"))


def test_builders_import_nothing_of_the_server():
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in sources("builders") for m in imports(p)
           if m.split(".")[0] == "piw_services"]
    assert not bad, bad


def test_shared_modules_import_no_service_or_tool():
    bad = []
    for path in sources("piw_services"):
        if package_of(path) not in (None, "db", "site"):
            continue
        bad += [f"{path.relative_to(ROOT)}: {m}" for m in imports(path) if service_imported(m)]
    assert not bad, bad


def test_no_service_reads_another_service_store():
    found = set()
    for path in sources("piw_services"):
        owner = package_of(path)
        if owner not in SERVICES:
            continue
        for module in imports(path):
            other = service_imported(module)
            if other and other != owner and module.split(".")[-1] == "store":
                found.add((owner, module))
    assert not found, sorted(found)


def test_service_packages_have_no_new_cycles():
    edges: dict[str, set[str]] = defaultdict(set)
    for path in sources("piw_services"):
        owner = package_of(path)
        if owner in SERVICES:
            edges[owner].update(o for m in imports(path)
                                if (o := service_imported(m)) in SERVICES and o != owner)
    cycles = {tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())}
    assert cycles <= KNOWN_CYCLES, sorted(cycles - KNOWN_CYCLES)
    assert cycles == KNOWN_CYCLES, f"gone, remove: {KNOWN_CYCLES - cycles}"


def test_every_module_imports():
    """A renamed or moved name is found here, not by the first user who runs that tool
    (ruff cannot see ``from a import gone``)."""
    import importlib
    import warnings

    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts)
               for top in ("piw_services", "builders") for p in sources(top)
               if "migrations" not in p.parts and p.stem != "__main__"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in modules:
            importlib.import_module(module.removesuffix(".__init__"))


def foreign_sql() -> set[tuple[str, str]]:
    """(module, table) for each SQL string constant in a service that names a table another
    service owns (our SQL keywords are upper case; prose "from builders" is not SQL)."""
    from piw_services.db.ownership import OWNERS, owner_of

    tables = sorted({t for owned in OWNERS.values() for t in owned}, key=len, reverse=True)
    sql = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO|TABLE)\s+(" + "|".join(tables) + r")\b")
    found = set()
    for path in sources("piw_services"):
        owner = package_of(path)
        if owner not in SERVICES or owner == "audit":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.update((str(path.relative_to(ROOT)), m.group(1))
                             for m in sql.finditer(node.value) if owner_of(m.group(1)) != owner)
    return found


def test_services_sql_names_only_their_own_tables():
    """Another's data is read through its queries module or the catalog's views, changed
    through its operations (SECURITY DEFINER functions). audit is not checked: checking every
    service's data against the others' is its job."""
    assert foreign_sql() == set()


def test_every_table_has_an_owner(db_engine):
    """A new table must say whose it is (piw_services/db/ownership.py)."""
    from sqlalchemy import inspect

    from piw_services.db.ownership import OWNERS, SHARED

    owned = {t for tables in OWNERS.values() for t in tables} | SHARED | {"alembic_version"}
    assert set(inspect(db_engine).get_table_names()) == owned


def test_the_benches_import_what_exists():
    """bench/ holds scripts (no .py), which nothing imports: a name they take from piw must
    still be there after a rename."""
    import importlib.util
    import warnings

    missing = []
    for path in sorted(p for p in (ROOT / "bench").iterdir()
                       if p.is_file() and p.read_text(errors="replace").startswith("#!")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.split(".")[0] in ("piw_services", "builders")):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    module = importlib.import_module(node.module)
                missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name)
                            and not (hasattr(module, "__path__") and importlib.util.find_spec(
                                f"{node.module}.{a.name}"))]
    assert not missing


def test_run_bench_knows_every_bench():
    """``./run bench NAME`` runs bench/NAME; an unknown name fell through to replay's
    arguments (freshness and churn did: "unrecognized arguments")."""
    scripts = {p.name for p in (ROOT / "bench").iterdir() if p.is_file() and p.name != "run"
               and p.read_text(errors="replace").startswith("#!")}
    names = re.search(r"\n\s+(replay\|[a-z|]+)\)", (ROOT / "run").read_text())
    assert names is not None, "./run's bench case not found"
    assert set(names.group(1).split("|")) == scripts
