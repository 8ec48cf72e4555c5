"""The Alembic migrations and the SQLAlchemy models describe one schema: a migration that
forgets a column (or a model that forgets an index) is caught here, not in production."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from piw_services.db.models import Base


def test_migrations_at_head_match_the_models(db_engine):
    with db_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
