"""What the migrations that publish an owner's SECURITY DEFINER functions share (0017, 0018):
how such a function is declared, and that only the roles granted it may call it.

A SECURITY DEFINER function runs with its owner's rights (the schema's owner), so its
search_path is fixed (PostgreSQL's advice: no caller's schema may shadow a table it names),
and PUBLIC's default EXECUTE is revoked: piw_services/db/roles.py grants each service's role
the functions it needs (piwheels/master/sql/create_piwheels.sql does the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from alembic import op

#: what follows the LANGUAGE of every such function
DEFINER = "SECURITY DEFINER SET search_path = public, pg_temp"


def create(statements: Iterable[str], functions: Mapping[str, str]) -> None:
    """Run the CREATE FUNCTION *statements*; *functions* maps each name to its arguments."""
    for statement in statements:
        op.execute(statement)
    for name, args in functions.items():
        op.execute(f"REVOKE ALL ON FUNCTION {name}({args}) FROM PUBLIC")


def drop(functions: Mapping[str, str]) -> None:
    for name, args in reversed(list(functions.items())):
        op.execute(f"DROP FUNCTION {name}({args})")
