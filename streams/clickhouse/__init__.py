"""ClickHouse side of the pipeline: connection, numbered migrations and the tables' column lists.

Modules:
    ``client``   -- :func:`~streams.clickhouse.client.connect` and server version.
    ``migrate``  -- applies ``migrations/NNNN_name.sql`` in order, recorded in ``schema_migrations``.
    ``tables``   -- name, ordered insert columns, dedup key and version of every table (pure).

Nothing is imported here so that ``tables`` stays importable without clickhouse-driver.
"""
