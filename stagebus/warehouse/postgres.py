"""The PostgreSQL target, on psycopg 3 (the ``stagebus[postgres]`` extra; imported only when a
``postgresql://`` URL is opened, so the rest of stagebus works without it).

One partition is one transaction: ``INSERT`` a placeholder tracking row ``ON CONFLICT DO
NOTHING`` (so there is a row to lock even for a first load), ``SELECT … FOR UPDATE`` it (a
concurrent loader of the same partition waits here, then sees what the first committed), then
``DELETE`` the partition's rows, ``COPY`` the new ones and ``UPDATE`` the tracking row. The
placeholder is part of the transaction: a crash removes it with everything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stagebus.errors import InvalidInput, WarehouseError
from stagebus.store.urls import redact_url
from stagebus.warehouse.columns import PARTITION, Column, Kind
from stagebus.warehouse.targets import (
    DDL_LOCK,
    TRACKING_TABLE,
    Outcome,
    PartitionLoad,
    Target,
    check_columns,
    covering_outcome,
    scrub,
    split_table,
)

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - exercised by the CLI test with psycopg hidden
    psycopg = None  # type: ignore[assignment]

CONNECT_TIMEOUT_S = 10

_TRACKING_COLUMNS = """
    target_table text NOT NULL,
    partition    text NOT NULL,
    dataset      text NOT NULL,
    run_id       text,
    stage        text,
    output       text,
    position     bigint NOT NULL,
    rows         bigint,
    sha256       text,
    loaded_at    timestamptz,
    PRIMARY KEY (target_table, partition)
"""


class PostgresTarget(Target):
    TYPES: dict[Kind, str] = {"bool": "boolean", "int": "bigint", "float": "double precision", "text": "text",
                              "json": "jsonb"}

    def __init__(self, dsn: str) -> None:
        if psycopg is None:
            raise InvalidInput("loading into PostgreSQL needs psycopg: pip install 'stagebus[postgres]'")
        self._dsn = dsn
        self.url = redact_url(dsn)
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                         application_name="stagebus load")
        except psycopg.ProgrammingError as exc:  # libpq could not parse the URL
            raise InvalidInput(f"bad warehouse URL {self.url}: {scrub(str(exc), dsn)}") from None
        except psycopg.Error as exc:
            raise WarehouseError(f"cannot connect to warehouse {self.url}: {scrub(str(exc), dsn)}") from None

    def prepare(self, table: str, columns: list[Column]) -> None:
        schema, name = split_table(table, schemas=True)
        with self._errors(), self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (DDL_LOCK,))
            if schema is not None:
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                self._tracking(schema), sql.SQL(_TRACKING_COLUMNS)))
            cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = coalesce(%s, current_schema()) AND table_name = %s", (schema, name))
            existing: dict[str, str] = dict(cur.fetchall())
            if existing:
                check_columns(table, existing, columns, self.TYPES)
                return
            spec = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(self.TYPES[c.kind]))
                                      for c in columns)
            cur.execute(sql.SQL("CREATE TABLE {} ({})").format(self._table(schema, name), spec))
            cur.execute(sql.SQL("CREATE INDEX {} ON {} ({})").format(
                sql.Identifier(f"{name}__partition"[:63]), self._table(schema, name), sql.Identifier(PARTITION)))

    def tracked(self, table: str) -> dict[str, tuple[str, int]]:
        schema, name = split_table(table, schemas=True)
        with self._errors(), self._conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (f"{schema}.{TRACKING_TABLE}" if schema else TRACKING_TABLE,))
            if cur.fetchone() == (None,):
                return {}
            cur.execute(sql.SQL("SELECT partition, dataset, position FROM {} WHERE target_table = %s").format(
                self._tracking(schema)), (name,))
            return {partition: (dataset, position) for partition, dataset, position in cur}

    def replace_partition(self, table: str, columns: list[Column], load: PartitionLoad,
                          rows: Iterable[tuple[Any, ...]]) -> Outcome:
        schema, name = split_table(table, schemas=True)
        tracking, target = self._tracking(schema), self._table(schema, name)
        with self._errors(), self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(sql.SQL("INSERT INTO {} (target_table, partition, dataset, position) VALUES (%s, %s, %s, -1) "
                                "ON CONFLICT DO NOTHING").format(tracking), (name, load.partition, load.dataset))
            cur.execute(sql.SQL("SELECT dataset, run_id, position, rows FROM {} "
                                "WHERE target_table = %s AND partition = %s FOR UPDATE").format(tracking),
                        (name, load.partition))
            found = cur.fetchone()
            assert found is not None  # inserted or already there, and locked
            outcome = covering_outcome(table, load, *found)
            if outcome is not None:
                return outcome
            cur.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(target, sql.Identifier(PARTITION)),
                        (load.partition,))
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                target, sql.SQL(", ").join(sql.Identifier(c.name) for c in columns))
            count = 0
            with cur.copy(copy_sql) as copy:
                write = copy.write_row
                for count, row in enumerate(rows, start=1):  # noqa: B007 - count is the total after
                    write(row)
            cur.execute(sql.SQL("UPDATE {} SET run_id = %s, stage = %s, output = %s, position = %s, rows = %s, "
                                "sha256 = %s, loaded_at = now() WHERE target_table = %s AND partition = %s")
                        .format(tracking),
                        (load.run_id, load.stage, load.output, load.position, count, load.sha256, name,
                         load.partition))
        return Outcome("loaded", count, load.run_id, load.position)

    def close(self) -> None:
        self._conn.close()

    @staticmethod
    def _table(schema: str | None, name: str) -> Any:
        return sql.Identifier(schema, name) if schema else sql.Identifier(name)

    def _tracking(self, schema: str | None) -> Any:
        return self._table(schema, TRACKING_TABLE)

    def _errors(self) -> _Translated:
        return _Translated(self._dsn)


class _Translated:
    """psycopg's errors as :class:`WarehouseError`, password masked; ours pass through."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, psycopg.Error):
            raise WarehouseError(f"warehouse {redact_url(self._dsn)}: {scrub(str(exc), self._dsn)}") from None
