"""Alembic environment of the plugin's tables (CKAN runs it for
``ckan db upgrade -p jupyternotebook``, and for every pending plugin on
``ckan db upgrade``/``ckan db init``). Its version table is
``jupyternotebook_alembic_version``, and autogenerate only looks at tables
named ``jupyternotebook_*``."""
from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

from ckan.model.meta import metadata

config = context.config
# keep the loggers the host process configured (tests, the CLI)
fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata
name = os.path.basename(os.path.dirname(__file__))


def include_object(object, object_name, type_, reflected, compare_to):
    if type_ == "table":
        return object_name.startswith(name)
    return True


def run_migrations_offline():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata, literal_binds=True,
        version_table=f"{name}_alembic_version",
        include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connectable = engine_from_config(
        config.get_section(config.config_ini_section),
        prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata,
            version_table=f"{name}_alembic_version",
            include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
