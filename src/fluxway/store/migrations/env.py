"""Alembic environment: run by :func:`fluxway.store.migrate.upgrade` with a live connection.

``alembic -x url=sqlite:///./fluxway.db upgrade head`` also works from a checkout (sync drivers).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from fluxway.store.tables import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite needs batch mode to alter tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database with: alembic -x url=sqlite:///./fluxway.db upgrade head")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        with create_engine(url).connect() as conn:
            _run(conn)
            conn.commit()
