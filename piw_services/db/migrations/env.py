"""Alembic environment: the URL comes from piw's config (see piw_services.db.alembic_config)."""

from alembic import context
from sqlalchemy import create_engine

from piw_services.db.models import Base

config = context.config


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        role = config.attributes.get("role")
        if role:  # piw-initdb: the schema's owner role makes what the migrations make
            connection.exec_driver_sql(f'SET ROLE "{role}"')
            connection.commit()  # SET ROLE holds for the session; alembic begins its own
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
